"""Train the book's classifier on several machines (or processes) at once.

TensorFlow's MultiWorkerMirroredStrategy keeps one copy of the model per worker and sums the
gradients of every step across workers (all-reduce), so all copies stay identical. On each
machine set TF_CONFIG -- the same worker list everywhere, each machine its own index -- and
start the same command on all of them (each waits for the others):

    # host1                                        # host2: the same, with "index": 1
    export TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
                       "task": {"type": "worker", "index": 0}}'
    python scripts/multiworker_train.py --out weights --run-dir /shared/ft-run

What changes: the global batch is the per-replica ``--batch`` x replicas per worker x workers,
and each worker reads only its share of every batch, of the training and of the validation
images (auto-shard policy DATA). What does not: the model, compile and callback code, which is
the notebooks' (``training.compile_classifier`` adapts a model to Keras 3's multi-worker
``fit``, validation included). Only the chief (worker 0) writes the run folder: every epoch's
logs, the best epoch's weights and Keras' BackupAndRestore backup; the other workers write
theirs into a temporary folder. If a worker is lost, the others stop; start them all again
with the same command and every worker resumes from the chief's backup of the last completed
epoch (so ``--run-dir`` must be on a disk every worker reads). ``--kill-in-epoch`` tries
that out. Without TF_CONFIG the script trains in one process; ``--workers N`` gives it the
global batch of N one-replica workers, which makes the runs comparable. Every worker saves
its final weights and its predictions for the validation images to ``--out``, so the copies
can be compared.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from pathlib import Path

import ftutils


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps", type=int, help="steps per epoch (default: all)")
    parser.add_argument("--per-class", type=int, default=8, help="training images per class")
    parser.add_argument("--val-per-class", type=int, default=2, help="validation images per class")
    parser.add_argument("--batch", type=int, default=8, help="images per replica and step")
    parser.add_argument("--lr", type=float, default=0.1, help="SGD learning rate")
    parser.add_argument("--workers", type=int, default=1, help="one process: act as N workers")
    parser.add_argument("--out", type=Path, default=Path("multiworker-weights"))
    parser.add_argument("--run-dir", type=Path, default=Path("multiworker-run"))
    parser.add_argument(
        "--kill-in-epoch",
        type=int,
        help="this worker kills itself after the first step of that epoch (1 = the first): "
        "start every worker again without it to see the training resume",
    )
    args = parser.parse_args()

    # First thing: the strategy must exist before TensorFlow runs any op.
    multiworker = "TF_CONFIG" in os.environ
    ftutils.setup(strategy="multiworker" if multiworker else "default", verbose=False)
    import keras
    import numpy as np
    import tensorflow as tf

    from ftutils import data, distribute, models, training

    index = json.loads(os.environ["TF_CONFIG"])["task"]["index"] if multiworker else 0
    name = f"worker-{index}" if multiworker else "single"

    train, test = data.load_fashion_mnist()
    subset = data.per_class(train, args.per_class, seed=0)  # the same images on every worker
    val = data.per_class(test, args.val_per_class, seed=0)
    model = models.build_classifier("mobilenet_v2", 10, image_size=32, dropout=0)
    training.compile_classifier(model, "sgd", args.lr)
    initial = {w.path: w.numpy() for w in model.trainable_weights}

    # The global batch: every worker builds the same dataset of global batches, and
    # tf.distribute hands each worker its slice of each batch (policy DATA: by element,
    # which works for in-memory data; the default AUTO would try files first).
    batch = distribute.global_batch(args.batch, model) * (1 if multiworker else args.workers)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA

    def global_batches(images: data.ImageData, steps: int | None = None) -> tf.data.Dataset:
        whole = len(images) // batch  # whole global batches only: each splits evenly
        if whole == 0:
            parser.error(f"{len(images)} images do not fill one global batch of {batch}")
        ds = data.make_dataset(images, 32, batch_size=batch, shuffle=False)
        return ds.take(min(steps or whole, whole)).with_options(options)

    ds, val_ds = global_batches(subset, args.steps), global_batches(val)
    print(
        f"{name}: {distribute.replicas(model)} replica(s) in sync, global batch {batch}, "
        f"{len(subset)} images, {len(val)} for validation",
        flush=True,
    )

    class Progress(keras.callbacks.Callback):
        """Says which epochs this process runs; kills it in epoch ``--kill-in-epoch``."""

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.epoch = epoch + 1
            print(f"{name}: running epoch {self.epoch}", flush=True)

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            if self.epoch == args.kill_in_epoch and batch == 0:
                print(f"{name}: killed in epoch {self.epoch}", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)

    # The book's resumable callbacks (run folder: epochs.json, best.weights.h5, backup/).
    callbacks = [*training.callbacks(run_dir=args.run_dir), Progress()]
    with distribute.explain_determinism_errors():
        history = model.fit(
            ds,
            validation_data=val_ds,
            epochs=args.epochs,
            callbacks=callbacks,
            shuffle=False,
            verbose=0,
        )
        predictions = model.predict(val_ds, verbose=0)  # every worker gets all of them
    for epoch, loss, val_loss in zip(
        history.epoch, history.history["loss"], history.history["val_loss"], strict=True
    ):  # after a restart, the epochs before it come from the run folder's log
        print(f"{name}: epoch {epoch + 1} loss {loss:.6f} val_loss {val_loss:.6f}", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    final = {w.path: w.numpy() for w in model.weights}
    arrays = {**final, **{f"initial:{path}": value for path, value in initial.items()}}
    arrays["predictions"] = predictions
    arrays["val_loss"] = np.array(history.history["val_loss"])
    np.savez(args.out / f"{name}.npz", **arrays)
    print(f"{name}: saved {args.out / f'{name}.npz'}", flush=True)


if __name__ == "__main__":
    main()
