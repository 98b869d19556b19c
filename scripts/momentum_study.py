"""Momentum and the roughness of the loss curve on a mini-batch fine-tune of a head (§3.3).

    python scripts/momentum_study.py        # every run -> data/results/momentum_study.json
    python scripts/momentum_study.py --seeds 0 1 2 --out /tmp/momentum.json

The setting of ``03_3_momentum.ipynb``: Fashion-MNIST at 96 px through a frozen ImageNet
MobileNetV2, a softmax head (cross-entropy) on the pooled features of 100 + 30 images per class,
each seed with its own train/validation split, initial head and batch order. Unlike the
notebook's full-batch runs, the head is trained as ``model.fit`` trains it: mini-batches of 32,
reshuffled every epoch, with ``keras.optimizers.SGD``. For each step size ``alpha`` three
optimisers, all seeds side by side in one compiled loop:

* ``SGD``: ``SGD(alpha)``, no momentum;
* ``momentum, same effective step``: ``SGD(alpha (1 - beta), momentum=beta)``, the article's
  EMA form with step ``alpha`` (in a direction where the gradient stays the same, both move by
  ``alpha`` times the gradient per step);
* ``momentum, same lr``: ``SGD(alpha, momentum=beta)``, the same number typed into Keras, a
  long-run step ``1 / (1 - beta)`` times larger.

After every update the loss on the whole training set is recorded, so the loss curve is the
one a reader would call steep or smooth: its total rise (the sum of its step-to-step
increases), its largest single rise, the share of steps on which it rises, its mean over the
run (how fast it gets low) and its end. At the end the sharpness of the minimum reached: the
largest eigenvalue of the Hessian of the training loss, by power iteration. Results are written
after every (alpha, optimiser); a re-run with the same parameters skips those the file holds.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parent.parent
RESULTS = PROJECT / "data" / "results" / "momentum_study.json"

PARAMS = {
    "dataset": "fashion_mnist",
    "backbone": "mobilenet_v2",
    "image_size": 96,
    "images_per_class": 100,
    "val_per_class": 30,
    "batch_size": 32,  # model.fit's default
    "epochs": 10,
    "beta": 0.9,
    "alphas": [0.001, 0.01, 0.1],
    "power_iterations": 50,
    "curves_kept": 3,  # the whole loss curve is stored for the first seeds only
    "seeds": list(range(10)),
}
KEY = ("alpha", "optimiser")
OPTIMISERS = ("SGD", "momentum, same effective step", "momentum, same lr")
#: What each run measures, one value per seed.
MEASURES = (
    "total_rise",
    "largest_rise",
    "rising_steps",
    "mean_loss",
    "final_loss",
    "val_accuracy",
    "sharpness",
)


def keras_settings(optimiser: str, alpha: float, beta: float) -> tuple[float, float]:
    """``(learning_rate, momentum)`` of ``keras.optimizers.SGD`` for an optimiser of the study."""
    if optimiser == "SGD":
        return alpha, 0.0
    if optimiser == "momentum, same effective step":
        return alpha * (1 - beta), beta
    if optimiser == "momentum, same lr":
        return alpha, beta
    raise ValueError(f"unknown optimiser {optimiser!r}")


def curve_measures(curve: np.ndarray) -> dict:
    """What one loss curve (loss after 0, 1, 2, ... updates) says about its steepness."""
    step = np.diff(curve)
    return {
        "total_rise": float(np.sum(np.maximum(step, 0))),
        "largest_rise": float(max(step.max(), 0)),
        "rising_steps": float(np.mean(step > 0)),
        "mean_loss": float(curve.mean()),
        "final_loss": float(curve[-1]),
    }


def weights_description(params: dict) -> str:
    """The weights the study ran on, as its provenance records them."""
    from ftutils import studies

    return studies.imagenet_weights(params)


class Study:
    """Pooled features and labels, and one (alpha, optimiser) over all seeds (:meth:`run`)."""

    def __init__(self, params: dict | None = None):
        self.params = json.loads(json.dumps(PARAMS if params is None else params))

    def prepare(self) -> Study:
        """Load the images and compute (or read from the disk cache) their features."""
        from ftutils import data, frozen, models

        p = self.params
        train_all, _ = data.load_dataset(p["dataset"], p["image_size"])
        pool = data.per_class(train_all, p["images_per_class"] + p["val_per_class"], seed=0)
        extractor = models.build_classifier(p["backbone"], pool.n_classes, p["image_size"])
        self.weights_description = weights_description(p)
        return self.with_features(frozen.extract_features(extractor, pool), pool.labels)

    def with_features(self, x_pool, pool_labels, seeds: list[int] | None = None) -> Study:
        """Use these features (the notebook's, or random ones in a test), split per seed."""
        import tensorflow as tf

        from ftutils import data

        labels = np.asarray(pool_labels)
        self.n_classes = int(labels.max()) + 1
        self.seeds = self.params["seeds"] if seeds is None else seeds
        k, v = self.n_classes, self.params["val_per_class"]
        splits = [data.holdout_indices(labels, k, v, s) for s in self.seeds]
        x_pool = np.asarray(x_pool, "float32")
        self.X = tf.constant(np.stack([x_pool[t] for t, _ in splits]))
        self.Y = tf.constant(np.eye(k, dtype="float32")[np.stack([labels[t] for t, _ in splits])])
        self.X_val = tf.constant(np.stack([x_pool[w] for _, w in splits]))
        self.Y_val = tf.constant(np.stack([labels[w] for _, w in splits]), tf.int64)
        return self

    def run(self, alpha: float, optimiser: str) -> dict:
        """Train every seed's head with one optimiser; the loss curves and their measures."""
        import keras
        import tensorflow as tf

        from ftutils.scratch import optimizers

        p = self.params
        stack = optimizers.SoftmaxRegressionStack(self.X.shape[2], self.n_classes, self.seeds)
        W, b = stack.variables
        lr, beta = keras_settings(optimiser, alpha, p["beta"])
        optimizer = keras.optimizers.SGD(lr, momentum=beta)
        optimizer.build([W, b])
        n, size = int(self.X.shape[1]), p["batch_size"]
        steps = -(-n // size)

        def full_losses():
            return stack.losses(self.X, self.Y)

        @tf.function
        def train():
            log = tf.TensorArray(tf.float32, size=p["epochs"] * steps + 1).write(0, full_losses())
            for epoch in tf.range(p["epochs"]):
                orders = tf.stack(  # each seed's own shuffle of its training images
                    [
                        tf.random.experimental.stateless_shuffle(tf.range(n), seed=[s, epoch])
                        for s in self.seeds
                    ]
                )
                for i in tf.range(steps):
                    index = orders[:, i * size : (i + 1) * size]
                    with tf.GradientTape() as tape:
                        loss = tf.reduce_sum(
                            stack.losses(
                                tf.gather(self.X, index, batch_dims=1),
                                tf.gather(self.Y, index, batch_dims=1),
                            )
                        )
                    grads = tape.gradient(loss, [W, b])
                    optimizer.apply_gradients(zip(grads, [W, b], strict=True))
                    log = log.write(epoch * steps + i + 1, full_losses())
            return log.stack()

        curves = train().numpy()  # (updates + 1, seeds)
        per_seed = [curve_measures(curves[:, s]) for s in range(len(self.seeds))]
        row = {"alpha": alpha, "optimiser": optimiser, "keras_lr": lr, "keras_momentum": beta}
        for name in per_seed[0]:
            row[name] = [m[name] for m in per_seed]
        row["val_accuracy"] = stack.accuracy(self.X_val, self.Y_val).numpy().tolist()
        row["sharpness"] = self.sharpness(stack).tolist()
        kept = curves[:, : p["curves_kept"]].T
        row["curves"] = [[float(f"{v:.5g}") for v in curve] for curve in kept]
        return row

    def sharpness(self, stack) -> np.ndarray:
        """Largest Hessian eigenvalue of each seed's training loss at its current weights."""
        import tensorflow as tf

        W, b = stack.variables

        def hvp(vW, vb):
            with tf.GradientTape() as outer:
                with tf.GradientTape() as inner:
                    loss = tf.reduce_sum(stack.losses(self.X, self.Y))
                gW, gb = inner.gradient(loss, [W, b])
                dot = tf.reduce_sum(gW * vW) + tf.reduce_sum(gb * vb)
            return outer.gradient(dot, [W, b])

        def normalised(vW, vb):
            norm = tf.sqrt(tf.reduce_sum(vW**2, axis=[1, 2]) + tf.reduce_sum(vb**2, axis=[1, 2]))
            return vW / norm[:, None, None], vb / norm[:, None, None]

        @tf.function
        def power():
            vW, vb = normalised(
                tf.random.stateless_normal(W.shape, seed=[0, 1]),
                tf.random.stateless_normal(b.shape, seed=[0, 2]),
            )
            value = tf.zeros(W.shape[0])
            for _ in tf.range(self.params["power_iterations"]):
                hW, hb = hvp(vW, vb)
                value = tf.reduce_sum(hW * vW, axis=[1, 2]) + tf.reduce_sum(hb * vb, axis=[1, 2])
                vW, vb = normalised(hW, hb)
            return value

        return power().numpy()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--seeds", type=int, nargs="+", help="default: the study's seeds")
    args = parser.parse_args(argv)

    import ftutils
    from ftutils import studies

    ftutils.setup(seed=0, verbose=False)
    start = time.perf_counter()
    study = Study()
    if args.seeds is not None:
        study.params["seeds"] = args.seeds
    study.prepare()
    command = shlex.join(["python", "scripts/momentum_study.py", *argv])
    made = studies.record(command, study.params, study.weights_description)
    results = studies.ResultsFile(args.out, made, key=KEY)
    plan = [(a, o) for a in study.params["alphas"] for o in OPTIMISERS]
    for i, (alpha, optimiser) in enumerate(plan, start=1):
        if results.has(alpha=alpha, optimiser=optimiser):
            continue
        began = time.perf_counter()
        row = study.run(alpha, optimiser)
        row["seconds"] = round(time.perf_counter() - began, 1)
        results.save(row)
        print(
            f"[{i}/{len(plan)}] alpha={alpha:g} {optimiser}: total rise "
            f"{np.mean(row['total_rise']):.3f}, mean loss {np.mean(row['mean_loss']):.3f}, "
            f"sharpness {np.mean(row['sharpness']):.3f} ({row['seconds']:.0f} s)",
            flush=True,
        )
    print(f"{len(plan)} runs in {time.perf_counter() - start:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
