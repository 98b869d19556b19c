"""Benchmark: training throughput of the book's classifier per strategy and precision.

Trains ``models.build_classifier("mobilenet_v2", 10, image_size=96)`` the way phase 2 of the
book's fine-tune does (top of the base unfrozen from ``block_13_expand``, BatchNormalization
frozen, Adam at 1e-4) on a fixed set of Fashion-MNIST images (default 100 per class), and
prints images per second for

* the default strategy in float32 (the baseline),
* ``mirrored:2``: a MirroredStrategy over the CPU split into two logical devices, float32,
* the default strategy in ``mixed_bfloat16``,

then the ratio of each to the baseline, then what published figures say to expect on a GPU.

``ftutils.setup`` chooses the strategy once per process (splitting the CPU into logical
devices must happen before TensorFlow starts), so every configuration runs in its own
subprocess of this script (``--config mirrored:2,float32`` prints one JSON line that the
parent parses). One epoch is run first and excluded from the timing (it traces and compiles
the training step); the global batch is the same in every configuration (``--global-batch``,
split evenly over the replicas), so each configuration does the same arithmetic on the same
batches. Every configuration runs on the CPU, also on a GPU host (``CUDA_VISIBLE_DEVICES=-1``
in the subprocesses): for a GPU use ``make gpu-check`` (``scripts/gpu_check.py``). Run with
``python bench/distribution.py`` (KERAS_HOME must hold the MobileNetV2 weights and
Fashion-MNIST); about two minutes on two CPU cores.

Why ``mirrored:2`` is not faster here: the two "devices" are logical devices carved out of
the same CPU, so both replicas compete for the same two cores that the default strategy
already keeps busy with one replica. There is no extra hardware to gain from; what the
strategy adds is its overhead: each step splits the batch, runs two half-size replicas (whose
smaller convolutions use the cores less well) and all-reduces (sums) their gradients before
the update.
So expect a ratio at or below 1. The row exists to exercise the distributed code path
(per-replica batches, cross-replica gradient reduction, variables mirrored on both devices)
end to end on a machine without GPUs: with N real GPUs each replica gets its own device and
the same code scales. Likewise ``mixed_bfloat16`` on a CPU pays off only where the CPU has
bfloat16 matrix hardware that oneDNN uses (the TensorFlow guide names Intel CPUs with AMX);
elsewhere the casts to and from bfloat16 cost more than the narrower arithmetic saves.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import time

CONFIGS = ("default,float32", "mirrored:2,float32", "default,mixed_bfloat16")
BASELINE = CONFIGS[0]
RESULT_PREFIX = "RESULT "

# Published figures, not measured here: quoted or paraphrased from the pages named.
PUBLISHED = (
    ("TensorFlow mixed-precision guide", "https://www.tensorflow.org/guide/mixed_precision",
     "the Keras mixed precision API 'can improve performance by more than 3 times on modern "
     "GPUs, 60% on TPUs and more than 2 times on latest Intel CPUs' (the CPU figure is for "
     "bfloat16 on Intel CPUs with AMX, added in tensorflow/docs PR #2209; earlier versions "
     "said that on CPUs 'mixed precision will run significantly slower'). Among NVIDIA GPUs, "
     "'those with compute capability 7.0 or higher will see the greatest performance benefit' "
     "because their Tensor Cores accelerate float16 matrix multiplications and convolutions; "
     "older GPUs 'offer no math performance benefit', only memory and bandwidth savings. On "
     "Ampere (8.0+) float32 already uses TensorFloat-32 in some ops, so the gain over float32 "
     "is smaller; mixed precision often lets the batch size double in the same memory."),
    ("NVIDIA, Tensor Cores in Volta", "https://www.nvidia.co.uk/data-center/tensorcore/",
     "Tensor Cores 'deliver ... up to 12X higher peak teraflops (TFLOPS) for training' and "
     "'3X performance speedups in training and inference over the previous generation' with "
     "FP16 compute and FP32 accumulation (vendor's peak and headline figures for the V100)."),
)  # fmt: skip


def measure(config: str, per_class: int, image_size: int, global_batch: int, epochs: int):
    """Train in this process under ``config`` ("strategy,precision"); return the measurements."""
    strategy_name, precision = config.split(",")
    import ftutils

    ftutils.setup(strategy=strategy_name, precision=precision, verbose=False)
    from ftutils import backbones, data, distribute, models, training

    train_all, _ = data.load_fashion_mnist()
    train = data.per_class(train_all, per_class, seed=0)
    model = models.build_classifier("mobilenet_v2", 10, image_size=image_size)
    backbones.unfreeze(models.base_of(model), from_layer="block_13_expand")
    training.compile_classifier(model, "adam", 1e-4)
    replicas = distribute.replicas(model)
    if global_batch % replicas:
        raise SystemExit(f"--global-batch {global_batch} does not split over {replicas} replicas")
    # make_dataset batches globally; the strategy hands each replica global_batch / replicas.
    ds = data.make_dataset(train, image_size, global_batch, shuffle=True, seed=0)
    start = time.perf_counter()
    # Warm-up epoch, not timed: traces and compiles the step, fills the dataset cache.
    # shuffle=False: make_dataset already reshuffles every epoch.
    model.fit(ds, epochs=1, shuffle=False, verbose=0)
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    history = model.fit(ds, epochs=epochs, shuffle=False, verbose=0)
    seconds = time.perf_counter() - start
    return {
        "config": config,
        "strategy": type(model.distribute_strategy).__name__,
        "replicas": replicas,
        "precision": model.dtype_policy.name,
        "deterministic": distribute.settings().deterministic,
        "images": len(train),
        "epochs": epochs,
        "seconds": seconds,
        "warmup_seconds": warmup,
        "images_per_second": len(train) * epochs / seconds,
        "final_loss": float(history.history["loss"][-1]),
    }


def run_child(config: str, args: argparse.Namespace) -> dict:
    """Run one configuration in a fresh interpreter and parse its JSON line."""
    command = [
        sys.executable, os.path.abspath(__file__), "--config", config,
        "--per-class", str(args.per_class), "--image-size", str(args.image_size),
        "--global-batch", str(args.global_batch), "--epochs", str(args.epochs),
    ]  # fmt: skip
    # The CPU only, even on a GPU host: mirrored:2 here means the CPU split in two.
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "-1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    lines = [line for line in result.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if result.returncode or not lines:
        raise SystemExit(
            f"configuration {config} failed (exit {result.returncode}):\n{result.stderr[-3000:]}"
        )
    return json.loads(lines[-1][len(RESULT_PREFIX) :])


def print_table(rows: list[dict]) -> None:
    base = next(row for row in rows if row["config"] == BASELINE)["images_per_second"]
    header = (
        f"{'configuration':<24} {'strategy':<28} {'replicas':>8} {'images/s':>9} "
        f"{'vs baseline':>11} {'warm-up s':>9} {'last loss':>9}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['config']:<24} {row['strategy']:<28} {row['replicas']:>8} "
            f"{row['images_per_second']:>9.1f} {row['images_per_second'] / base:>10.2f}x "
            f"{row['warmup_seconds']:>9.1f} {row['final_loss']:>9.3f}"
        )


def print_published() -> None:
    print("\nWhat to expect on a GPU -- PUBLISHED FIGURES, NOT MEASURED HERE:")
    paragraphs = [f"{source} ({url}): {text}" for source, url, text in PUBLISHED]
    paragraphs.append(
        "So on a GPU with compute capability >= 7.0, ftutils' auto precision (mixed_float16) "
        "is where a speed-up is expected. A MobileNetV2 at 96 px is small and may be limited by "
        "the input pipeline and per-step overhead rather than by arithmetic: measure on your GPU "
        "with `make gpu-check` rather than assume the headline factor. With N real GPUs, "
        "mirrored:N runs one replica per GPU, so throughput can approach N times one GPU's "
        "(less the gradient all-reduce), unlike the logical CPUs above."
    )
    for paragraph in paragraphs:
        print(textwrap.fill(paragraph, width=96, initial_indent="* ", subsequent_indent="  "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="run one 'strategy,precision' here and print JSON")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--global-batch", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs after the warm-up")
    args = parser.parse_args()
    if args.config:
        row = measure(args.config, args.per_class, args.image_size, args.global_batch, args.epochs)
        print(RESULT_PREFIX + json.dumps(row), flush=True)
        return
    images = args.per_class * 10
    intro = (
        f"Training throughput of MobileNetV2 at {args.image_size} px with the top unfrozen from "
        f"block_13_expand (phase 2 of the book's fine-tune): {images} Fashion-MNIST images, "
        f"global batch {args.global_batch}, {args.epochs} timed epochs after one untimed "
        f"warm-up epoch, one subprocess per configuration, {os.cpu_count()} CPU cores."
    )
    print(textwrap.fill(intro, width=96) + "\n")
    rows = []
    for config in CONFIGS:
        started = time.perf_counter()
        rows.append(run_child(config, args))
        print(f"  {config}: done in {time.perf_counter() - started:.0f} s", flush=True)
    print()
    print_table(rows)
    determinism = ", ".join(sorted({str(row["deterministic"]) for row in rows}))
    print(f"op determinism: {determinism} (ftutils' default without a GPU: on)")
    print(
        f"\nmirrored:2 here is two logical devices on the same {os.cpu_count()} CPU cores: it "
        "checks that the\ndistributed path trains (finite loss close to the baseline's), not "
        "that it is faster."
    )
    print_published()


if __name__ == "__main__":
    main()
