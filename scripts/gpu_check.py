"""Check that the book's default fine-tune runs on this machine's GPU (``make gpu-check``).

    python scripts/gpu_check.py                 # on a GPU host: 160 px, 500 images per class
    python scripts/gpu_check.py --force-cpu     # same code on the CPU, 96 px, 20 per class

Without a GPU it prints ``no GPU found: <devices>; nothing to check`` and exits 0 having run
nothing: a CPU run is not evidence that the GPU path works. With one it calls
``ftutils.setup()`` (auto strategy, precision and determinism: OneDeviceStrategy or
MirroredStrategy, ``mixed_float16`` on compute capability >= 7.0, op determinism off), prints
what was chosen, then runs the two-phase fine-tune at GPU-size parameters:
``frozen.extract_features`` + ``frozen.train_head`` + ``models.copy_head``, then the base
unfrozen from ``block_13_expand`` and trained through the whole network. It prints
images per second for extraction and fine-tuning (end to end, as a reader's run sees them,
and in steady state after the step is traced), the test accuracy on 2,000 Fashion-MNIST test
images after each phase, and peak GPU memory. It exits 1 when the fine-tuned accuracy is
below ``--min-accuracy`` (NaN losses from float16 overflow show up there).

``--force-cpu`` hides the GPUs (``CUDA_VISIBLE_DEVICES=-1`` before TensorFlow starts) and
defaults to small sizes, so the code path can be exercised on any machine; its numbers say
nothing about a GPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

UNFREEZE_FROM = "block_13_expand"  # notebook 01: the last four inverted-residual blocks


def gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.2f} GiB"


def peak_rss() -> str:
    """Peak resident memory of this process, where the platform reports it."""
    try:
        import resource
    except ImportError:  # Windows
        return "n/a"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return gib(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, else KiB


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--force-cpu", action="store_true", help="hide GPUs and run the same code on the CPU"
    )
    parser.add_argument("--image-size", type=int, help="default 160 (96 with --force-cpu)")
    parser.add_argument(
        "--per-class", type=int, help="labelled images per class, default 500 (20 with --force-cpu)"
    )
    parser.add_argument("--test-images", type=int, default=2000, help="10 classes, balanced")
    parser.add_argument("--head-epochs", type=int, default=10, help="head on cached features")
    parser.add_argument("--finetune-epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32, help="per replica")
    parser.add_argument("--min-accuracy", type=float, default=0.5)
    args = parser.parse_args(argv)
    if args.image_size is None:
        args.image_size = 96 if args.force_cpu else 160
    if args.per_class is None:
        args.per_class = 20 if args.force_cpu else 500
    return args


def describe_devices(tf, gpus: list) -> None:
    print(f"{'devices':>14}: {[d.name for d in tf.config.list_physical_devices()]}")
    for gpu in gpus:
        details = tf.config.experimental.get_device_details(gpu)
        capability = details.get("compute_capability")
        capability = ".".join(map(str, capability)) if capability else "unknown"
        print(
            f"{'':>16}{gpu.name}: {details.get('device_name', '?')}, "
            f"compute capability {capability}"
        )
    build = tf.sysconfig.get_build_info()
    if build.get("is_cuda_build"):
        print(
            f"{'CUDA build':>14}: CUDA {build.get('cuda_version')}, "
            f"cuDNN {build.get('cudnn_version')}"
        )


def epoch_timer():
    """A Keras callback recording the wall time of every epoch in ``.seconds``.

    Made here, not at import: importing Keras starts TensorFlow, which must come after
    ``--force-cpu`` has hidden the GPUs.
    """
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.start)

    return EpochTimer()


def run_check(args: argparse.Namespace, gpus: list) -> int:
    import numpy as np
    import tensorflow as tf

    import ftutils
    from ftutils import backbones, data, distribute, frozen, models, training

    summary = ftutils.setup(seed=0, verbose=False)
    for key in ("strategy", "replicas", "precision", "deterministic", "worker"):
        print(f"{key:>14}: {summary[key]}")
    train_all, test_all = data.load_fashion_mnist()
    labelled = data.per_class(train_all, args.per_class, seed=0)
    train, val = data.split(labelled, 0.2, seed=0)
    test = data.per_class(test_all, args.test_images // train_all.n_classes, seed=0)
    size, batch = args.image_size, args.batch_size
    print(
        f"{'run':>14}: MobileNetV2 at {size} px, {len(train)} train / {len(val)} val / "
        f"{len(test)} test images, batch {batch} per replica "
        f"(global {distribute.global_batch(batch)})"
    )

    model = models.build_classifier("mobilenet_v2", train.n_classes, image_size=size)
    print("\n== feature extraction (notebook 01's recipe) ==")
    start = time.perf_counter()
    # No disk cache: the point is to time the pass through the base.
    train_features = frozen.extract_features(model, train, batch, use_disk_cache=False)
    val_features = frozen.extract_features(model, val, batch, use_disk_cache=False)
    seconds = time.perf_counter() - start
    n = len(train) + len(val)
    print(
        f"extract_features: {n} images in {seconds:.1f} s = {n / seconds:.0f} images/s "
        "(end to end: includes building and tracing the extractor, twice)"
    )
    start = time.perf_counter()
    head, record = frozen.train_head(
        train_features, train.labels, val_features, val.labels, train.n_classes,
        epochs=args.head_epochs, batch_size=batch,
    )  # fmt: skip
    models.copy_head(head, model)
    print(f"train_head: {args.head_epochs} epochs in {time.perf_counter() - start:.1f} s")
    extraction_accuracy = training.accuracy(model, test, batch)
    print(f"test accuracy, frozen base + head: {extraction_accuracy:.3f}")

    print(f"\n== fine-tuning from {UNFREEZE_FROM}, through the whole network ==")
    start = time.perf_counter()
    backbones.unfreeze(models.base_of(model), from_layer=UNFREEZE_FROM)
    training.compile_classifier(model, "adam", 1e-4)
    record = training.fit_classifier(
        model, train, val, args.finetune_epochs, record, "fine-tune", batch_size=batch, verbose=0
    )
    seconds = time.perf_counter() - start
    n = len(train) * args.finetune_epochs
    print(
        f"{args.finetune_epochs} epochs x {len(train)} images in {seconds:.1f} s = "
        f"{n / seconds:.0f} images/s (end to end: includes tracing the training step and a "
        "validation pass every epoch)"
    )
    finetune_rows = [row for row in record.rows if row["phase"] == "fine-tune"]
    losses = [row["loss"] for row in finetune_rows]
    print("loss per epoch:", ", ".join(f"{v:.3f}" for v in losses))
    print("val accuracy per epoch:", ", ".join(f"{r['val_accuracy']:.3f}" for r in finetune_rows))
    finetune_accuracy = training.accuracy(model, test, batch)
    print(f"test accuracy, fine-tuned: {finetune_accuracy:.3f}")

    print("\n== steady state (step already traced; these epochs train the model further) ==")
    global_batch = distribute.global_batch(batch, model)
    timer = epoch_timer()
    with distribute.explain_determinism_errors():
        model.fit(
            data.make_dataset(train, size, global_batch, shuffle=True, seed=1),
            epochs=2,
            shuffle=False,
            callbacks=[timer],
            verbose=0,
        )
    print(f"training: {len(train) / timer.seconds[-1]:.0f} images/s (second of two epochs)")
    test_ds = data.make_dataset(test, size, global_batch)
    model.predict(test_ds, verbose=0)  # fills the image cache; traced already
    start = time.perf_counter()
    model.predict(test_ds, verbose=0)
    print(
        f"inference (the extraction pass + head): {len(test) / (time.perf_counter() - start):.0f}"
        " images/s (second pass over the test images)"
    )

    print("\n== memory ==")
    if gpus:
        for index in range(len(gpus)):
            info = tf.config.experimental.get_memory_info(f"GPU:{index}")
            print(f"peak GPU memory, GPU:{index}: {gib(info['peak'])} (TensorFlow allocator)")
    else:
        print("peak GPU memory: n/a (CPU run)")
    print(f"peak process RSS (host memory): {peak_rss()}")

    healthy = bool(np.all(np.isfinite(losses))) and finetune_accuracy >= args.min_accuracy
    verdict = "OK" if healthy else "FAILED"
    print(
        f"\n{verdict}: fine-tuned test accuracy {finetune_accuracy:.3f} "
        f"(needs >= {args.min_accuracy}), losses finite: {bool(np.all(np.isfinite(losses)))}"
    )
    return 0 if healthy else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    if args.force_cpu:
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"  # before TensorFlow starts
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # as ftutils does, before TensorFlow
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus and not args.force_cpu:
        devices = [d.name for d in tf.config.list_physical_devices()]
        print(f"no GPU found: {devices}; nothing to check")
        return 0
    if args.force_cpu:
        print(
            "--force-cpu: GPUs hidden (CUDA_VISIBLE_DEVICES=-1). This exercises the code path on "
            "the CPU;\nits numbers say nothing about a GPU.\n"
        )
    describe_devices(tf, gpus)
    status = run_check(args, gpus)
    print(f"total time: {time.perf_counter() - started:.0f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
