"""Train the book's classifier on several machines (or processes) at once.

TensorFlow's MultiWorkerMirroredStrategy keeps one copy of the model per worker and sums the
gradients of every step across workers (all-reduce), so all copies stay identical. On each
machine set TF_CONFIG -- the same worker list everywhere, each machine its own index -- and
start the same command on all of them (each waits for the others):

    # host1                                        # host2: the same, with "index": 1
    export TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
                       "task": {"type": "worker", "index": 0}}'
    python scripts/multiworker_train.py --out weights --backup-dir /tmp/ft-backup

What changes: the global batch is the per-replica ``--batch`` x replicas per worker x workers,
and each worker reads only its share of every batch (auto-shard policy DATA). What does not:
the model and compile code, which is the notebooks' (``training.compile_classifier`` adapts
a model to Keras 3's multi-worker ``fit``). If a worker is lost, the others stop;
start them all again with the same command and BackupAndRestore resumes every worker from
the last completed epoch. Without TF_CONFIG the script trains in one process; ``--workers
N`` gives it the global batch of N one-replica workers, which makes the runs comparable.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import ftutils


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps", type=int, help="steps per epoch (default: all)")
    parser.add_argument("--per-class", type=int, default=8, help="training images per class")
    parser.add_argument("--batch", type=int, default=8, help="images per replica and step")
    parser.add_argument("--lr", type=float, default=0.1, help="SGD learning rate")
    parser.add_argument("--workers", type=int, default=1, help="one process: act as N workers")
    parser.add_argument("--out", type=Path, default=Path("multiworker-weights"))
    parser.add_argument("--backup-dir", type=Path, default=Path("multiworker-backup"))
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

    train, _ = data.load_fashion_mnist()
    subset = data.per_class(train, args.per_class, seed=0)  # the same images on every worker
    model = models.build_classifier("mobilenet_v2", 10, image_size=32, dropout=0)
    training.compile_classifier(model, "sgd", args.lr)
    initial = {w.path: w.numpy() for w in model.trainable_weights}

    # The global batch: every worker builds the same dataset of global batches, and
    # tf.distribute hands each worker its slice of each batch (policy DATA: by element,
    # which works for in-memory data; the default AUTO would try files first).
    batch = distribute.global_batch(args.batch, model) * (1 if multiworker else args.workers)
    whole = len(subset) // batch  # whole global batches only: each splits evenly
    if whole == 0:
        parser.error(f"{len(subset)} images do not fill one global batch of {batch}")
    ds = data.make_dataset(subset, 32, batch_size=batch, shuffle=False)
    ds = ds.take(min(args.steps or whole, whole))
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    ds = ds.with_options(options)
    print(
        f"{name}: {distribute.replicas(model)} replica(s) in sync, global batch {batch}, "
        f"{len(subset)} images",
        flush=True,
    )

    # One backup folder per worker: Keras 3's BackupAndRestore does not coordinate workers,
    # and two workers writing the same file on a shared disk would corrupt it.
    backup = keras.callbacks.BackupAndRestore(str(args.backup_dir / name))
    with distribute.explain_determinism_errors():
        history = model.fit(ds, epochs=args.epochs, callbacks=[backup], shuffle=False, verbose=0)
    for epoch, loss in zip(history.epoch, history.history["loss"], strict=True):  # after a restart:
        print(f"{name}: epoch {epoch + 1} loss {loss:.6f}", flush=True)  # the epochs left

    args.out.mkdir(parents=True, exist_ok=True)
    final = {w.path: w.numpy() for w in model.weights}
    arrays = {**final, **{f"initial:{path}": value for path, value in initial.items()}}
    np.savez(args.out / f"{name}.npz", **arrays)
    print(f"{name}: saved {args.out / f'{name}.npz'}", flush=True)


if __name__ == "__main__":
    main()
