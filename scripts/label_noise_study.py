"""Noisy target labels and the choice of loss (§3.1): the seeds too many for notebook 03_1.

    python scripts/label_noise_study.py     # every run -> data/results/label_noise_study.json
    python scripts/label_noise_study.py --seeds 0 --out /tmp/noise.json

The setting of ``03_1_loss_functions.ipynb``: Fashion-MNIST at 96 px through a frozen ImageNet
MobileNetV2, a softmax head trained with Adam on the pooled features of 100 + 30 images per
class (each seed draws its own train/validation split of that pool, its own initial head, its
own flipped labels and batch order) and tested on 50 clean test images per class. A fraction
of the training labels is flipped to another class drawn uniformly ("symmetric" noise); the
validation and test labels stay clean. Every seed trains, side by side in one compiled loop,
a head per noise level and per

* loss: cross-entropy, mean absolute error on the probabilities (Ghosh, Kumar & Sastry, AAAI
  2017), generalized cross-entropy with q = 0.7 (Zhang & Sabuncu, NeurIPS 2018), cross-entropy
  on labels smoothed by 0.1 (Szegedy et al., CVPR 2016), and Huber with delta = 0.1 on the
  probabilities (the notebook's);
* L2 strength: cross-entropy plus lambda * sum(W^2), for each lambda of ``l2_strengths``.

All constants (q, the smoothing, delta, the lambdas) were fixed before the runs: q and the
smoothing are their papers' usual values, delta and the lambdas the notebook's. The notebook
re-runs seed 0 live and compares it with the file. Results are written after every seed; a
re-run with the same parameters skips the seeds the file already holds.
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
RESULTS = PROJECT / "data" / "results" / "label_noise_study.json"

PARAMS = {
    "dataset": "fashion_mnist",
    "backbone": "mobilenet_v2",
    "image_size": 96,
    "images_per_class": 100,  # training images per class
    "val_per_class": 30,  # held out of the same pool, clean labels
    "test_per_class": 50,  # the same clean test images for every seed
    "epochs": 40,
    "batch_size": 64,
    "learning_rate": 1e-3,  # Adam
    "noise_levels": [0.0, 0.2, 0.4],
    "losses": {
        "cross-entropy": {},
        "MAE": {},
        "GCE": {"q": 0.7},
        "label smoothing": {"epsilon": 0.1},
        "Huber": {"delta": 0.1},
    },
    "l2_strengths": [0.01, 0.1, 1.0],  # cross-entropy + lambda * sum(W^2)
    "seeds": list(range(10)),
}
KEY = ("seed",)
#: What each head measures.
MEASURES = ("val_accuracy", "test_accuracy", "fits_given_labels", "train_accuracy", "memorised")


def flip_labels(labels: np.ndarray, fraction: float, n_classes: int, seed: int) -> np.ndarray:
    """Give ``fraction`` of the labels a different, uniformly drawn wrong class (as 03_1)."""
    rng = np.random.default_rng(seed)
    noisy = labels.copy()
    index = rng.choice(len(labels), round(fraction * len(labels)), replace=False)
    noisy[index] = (noisy[index] + rng.integers(1, n_classes, len(index))) % n_classes
    return noisy


def loss_on_logits(name: str, constants: dict):
    """Per-example loss ``f(y_one_hot, logits)`` of the loss called ``name``."""
    import tensorflow as tf

    from ftutils.scratch import losses

    def mae(y, z):  # mean over classes of |p - y|: 2 (1 - p_true) / K for a one-hot y
        return tf.reduce_mean(tf.abs(losses.softmax(z) - y), axis=-1)

    def gce(y, z):  # (1 - p_true^q) / q: cross-entropy as q -> 0, MAE-like at q = 1
        q = constants["q"]
        return (1 - tf.reduce_sum(y * losses.softmax(z), axis=-1) ** q) / q

    def smoothed(y, z):
        eps = constants["epsilon"]
        return losses.cross_entropy_from_logits(y * (1 - eps) + eps / y.shape[-1], z)

    def huber(y, z):
        return losses.huber(y, losses.softmax(z), constants["delta"])

    known = {
        "cross-entropy": losses.cross_entropy_from_logits,
        "MAE": mae,
        "GCE": gce,
        "label smoothing": smoothed,
        "Huber": huber,
    }
    if name in known:
        return known[name]
    raise ValueError(f"unknown loss {name!r}")


def weights_description(params: dict) -> str:
    """The weights the study ran on, as its provenance records them."""
    from ftutils import studies

    return studies.imagenet_weights(params)


class Study:
    """Pooled features and labels, and one seed's heads (:meth:`run`)."""

    def __init__(self, params: dict | None = None):
        self.params = json.loads(json.dumps(PARAMS if params is None else params))

    def prepare(self) -> Study:
        """Load the images and compute (or read from the disk cache) their features."""
        from ftutils import data, frozen, models

        p = self.params
        train_all, test_all = data.load_dataset(p["dataset"], p["image_size"])
        pool = data.per_class(train_all, p["images_per_class"] + p["val_per_class"], seed=0)
        test = data.per_class(test_all, p["test_per_class"], seed=0)
        extractor = models.build_classifier(p["backbone"], pool.n_classes, p["image_size"])
        x_pool, x_test = (frozen.extract_features(extractor, d) for d in (pool, test))
        self.weights_description = weights_description(p)
        return self.with_features(x_pool, pool.labels, x_test, test.labels, pool.n_classes)

    def with_features(self, x_pool, pool_labels, x_test, test_labels, n_classes: int) -> Study:
        """Use these features (e.g. the notebook's, or random ones in a test)."""
        self.x_pool, self.pool_labels = np.asarray(x_pool, "float32"), np.asarray(pool_labels)
        self.x_test, self.test_labels = np.asarray(x_test, "float32"), np.asarray(test_labels)
        self.n_classes = n_classes
        return self

    def specs(self) -> list[dict]:
        """The heads every seed trains: (noise, loss, l2), in a fixed order."""
        p = self.params
        heads = [
            {"noise": n, "loss": name, "l2": 0.0} for n in p["noise_levels"] for name in p["losses"]
        ]
        heads += [
            {"noise": n, "loss": "cross-entropy", "l2": lam}
            for n in p["noise_levels"]
            for lam in p["l2_strengths"]
        ]  # fmt: skip
        return heads

    def run(self, seed: int) -> dict:
        """Every head of one seed, trained side by side; what each measured."""
        import keras
        import tensorflow as tf

        from ftutils import data
        from ftutils.scratch import optimizers

        p, k = self.params, self.n_classes
        train_rows, val_rows = data.holdout_indices(self.pool_labels, k, p["val_per_class"], seed)
        true = self.pool_labels[train_rows]
        specs = self.specs()
        given = np.stack([flip_labels(true, s["noise"], k, seed) for s in specs])
        x = tf.constant(self.x_pool[train_rows])
        targets = tf.constant(np.eye(k, dtype="float32")[given])
        start = optimizers.SoftmaxRegression(x.shape[1], k, seed=seed).W.numpy()
        W = tf.Variable(np.repeat(start[None], len(specs), axis=0))
        b = tf.Variable(np.zeros((len(specs), k), "float32"))
        optimizer = keras.optimizers.Adam(p["learning_rate"])
        optimizer.build([W, b])
        l2 = tf.constant([s["l2"] for s in specs], tf.float32)
        members = {
            name: [i for i, s in enumerate(specs) if s["loss"] == name] for name in p["losses"]
        }
        groups = [
            (loss_on_logits(name, constants), tf.constant(members[name]))
            for name, constants in p["losses"].items()
            if members[name]
        ]
        n, size = int(x.shape[0]), p["batch_size"]
        steps = -(-n // size)

        def objective(index):
            z = tf.einsum("bd,hdc->hbc", tf.gather(x, index), W) + b[:, None, :]
            yb = tf.gather(targets, index, axis=1)
            total = tf.reduce_sum(l2 * tf.reduce_sum(W**2, axis=[1, 2]))
            for fn, members in groups:
                per_example = fn(tf.gather(yb, members), tf.gather(z, members))
                total += tf.reduce_sum(tf.reduce_mean(per_example, axis=-1))
            return total

        @tf.function
        def train():
            for epoch in tf.range(p["epochs"]):
                order = tf.random.experimental.stateless_shuffle(tf.range(n), seed=[seed, epoch])
                for i in tf.range(steps):
                    with tf.GradientTape() as tape:
                        loss = objective(order[i * size : (i + 1) * size])
                    grads = tape.gradient(loss, [W, b])
                    optimizer.apply_gradients(zip(grads, [W, b], strict=True))

        train()
        W_end, b_end = W.numpy(), b.numpy()

        def predict(features):
            return np.argmax(np.einsum("nd,hdc->hnc", features, W_end) + b_end[:, None], axis=-1)

        fitted = predict(self.x_pool[train_rows])
        val = predict(self.x_pool[val_rows])
        test = predict(self.x_test)
        heads = []
        for i, spec in enumerate(specs):
            flipped = given[i] != true
            heads.append(
                {
                    **spec,
                    "val_accuracy": float(np.mean(val[i] == self.pool_labels[val_rows])),
                    "test_accuracy": float(np.mean(test[i] == self.test_labels)),
                    "fits_given_labels": float(np.mean(fitted[i] == given[i])),
                    "train_accuracy": float(np.mean(fitted[i] == true)),
                    "memorised": float(np.mean(fitted[i][flipped] == given[i][flipped]))
                    if flipped.any()
                    else None,
                    "weight_norm": float(np.linalg.norm(W_end[i])),
                }
            )
        return {"seed": seed, "heads": heads}


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
    study = Study().prepare()
    command = shlex.join(["python", "scripts/label_noise_study.py", *argv])
    made = studies.record(command, study.params, study.weights_description)
    results = studies.ResultsFile(args.out, made, key=KEY)
    seeds = study.params["seeds"] if args.seeds is None else args.seeds
    for i, seed in enumerate(seeds, start=1):
        if results.has(seed=seed):
            continue
        began = time.perf_counter()
        row = study.run(seed)
        row["seconds"] = round(time.perf_counter() - began, 1)
        results.save(row)
        top = max(study.params["noise_levels"])
        at_top = [h for h in row["heads"] if h["noise"] == top and h["l2"] == 0]
        scores = " ".join(f"{h['loss']} {h['test_accuracy']:.3f}" for h in at_top)
        print(
            f"[{i}/{len(seeds)}] seed={seed}, {top:.0%} noise: {scores} ({row['seconds']:.0f} s)",
            flush=True,
        )
    print(f"{len(seeds)} seeds in {time.perf_counter() - start:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
