"""What the training set's balance and variety cost (§2.1): the study notebook 02_1 plots.

    python scripts/dataset_study.py               # every run -> data/results/dataset_study.json
    python scripts/dataset_study.py --seeds 0 --out /tmp/dataset.json

A new head (dropout 0.2 + softmax) on the pooled features of the frozen ImageNet MobileNetV2 at
96 px, Fashion-MNIST, trained with Adam (lr 1e-3) for the same number of steps (batches of 32)
in every run, so every training set gets the same budget. All training images come from one
pool of ``pool_per_class`` images per class of the training part (a tenth of every class is
held out, as in the notebook); every seed orders each class's pool at random, and every set
below takes the first images of that order (nested sets). The test images are the same
``test_per_class`` images per class for every run. Each run records the test accuracy of
every class.

- **imbalance**: ``balanced`` has ``total_per_class`` images of every class; ``imbalanced``
  has as many images in all, ``ratio`` times fewer in the rare half of the classes (the even
  classes, then the odd ones: every class is rare once). On the imbalanced set: ``class
  weights`` (Keras' ``class_weight``, each class weighted n / (classes x n_c), so the mean
  weight of an image stays 1) and ``oversampling`` (every rare image repeated ``ratio`` times,
  so all classes have as many; the same number of steps).
- **richness** (训练数据的丰富程度), ``richness_per_class`` images of every class: ``distinct``
  (different images), ``few originals`` (only the first ``originals`` of them),
  ``augmented copies`` (those originals, each with ``richness_per_class / originals - 1``
  randomly augmented copies: ``ftutils.augment.augmentation``'s defaults), and ``narrow``
  (one random image of the class and its nearest neighbours in pixels: a narrow corner of
  the class).

Results are written after every run (a re-run with the same parameters skips what the file
already holds), with the command, parameters, library versions, machine and dates.
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
RESULTS = PROJECT / "data" / "results" / "dataset_study.json"

PARAMS = {
    "dataset": "fashion_mnist",
    "backbone": "mobilenet_v2",
    "image_size": 96,
    "pool_per_class": 300,
    "test_per_class": 200,
    "total_per_class": 110,  # balanced: 110 of each class; imbalanced: 200 and 20, as many in all
    "ratio": 10,
    "rare": {"even": [0, 2, 4, 6, 8], "odd": [1, 3, 5, 7, 9]},
    "richness_per_class": 50,
    "originals": 5,
    "steps": 500,
    "batch_size": 32,
    "learning_rate": 1e-3,
    "seeds": [0, 1, 2, 3, 4],
}
KEY = ("seed", "run")
IMBALANCE_METHODS = ("imbalanced", "class weights", "oversampling")
RICHNESS_METHODS = ("distinct", "few originals", "augmented copies", "narrow")


def runs_of(params: dict) -> list[str]:
    """The runs of one seed, in the order they run."""
    imbalance = [f"rare {name}: {m}" for name in params["rare"] for m in IMBALANCE_METHODS]
    return ["balanced", *imbalance, *(f"richness: {m}" for m in RICHNESS_METHODS)]


def imbalanced_counts(params: dict, rare: list[int], n_classes: int) -> np.ndarray:
    """Images per class of the imbalanced set: ``ratio`` times fewer (at least one) in the
    ``rare`` classes, about as many in all as the balanced set (``total_per_class`` x classes;
    exactly as many with the study's parameters: 5 x 200 + 5 x 20 = 10 x 110)."""
    total = params["total_per_class"] * n_classes
    n_rare = len(rare)
    common = total * params["ratio"] // (params["ratio"] * (n_classes - n_rare) + n_rare)
    counts = np.full(n_classes, common)
    counts[rare] = max(1, common // params["ratio"])
    return counts


def balanced_weights(labels: np.ndarray, n_classes: int) -> dict[int, float]:
    """Keras ``class_weight``: n / (classes x n_c), so the mean weight of an image is 1."""
    counts = np.bincount(labels, minlength=n_classes)
    return {c: float(len(labels) / (n_classes * counts[c])) for c in range(n_classes)}


def per_class_accuracy(predicted: np.ndarray, labels: np.ndarray, n_classes: int) -> list[float]:
    """The fraction of every class's test images classified correctly (its recall)."""
    return [float(np.mean(predicted[labels == c] == c)) for c in range(n_classes)]


class Study:
    """The pool, the test set, their features, and one seed's runs (:meth:`run`)."""

    def __init__(self, params: dict | None = None):
        self.params = json.loads(json.dumps(PARAMS if params is None else params))

    def prepare(self) -> Study:
        from ftutils import backbones, data, frozen, models

        p = self.params
        train_all, test_all = data.load_dataset(p["dataset"], p["image_size"])
        train_part, _ = data.split(train_all, 0.1, seed=0)
        self.pool = data.in_memory(data.per_class(train_part, p["pool_per_class"], seed=0),
                                   p["image_size"])  # fmt: skip
        self.test = data.per_class(test_all, p["test_per_class"], seed=0)
        self.n_classes = train_all.n_classes
        self.model = models.build_classifier(p["backbone"], self.n_classes, p["image_size"])
        self.lower = frozen.cut(self.model).lower
        self._features: dict[int, np.ndarray] = {}
        self._test_features = None
        weights = backbones.imagenet_weights_path(p["backbone"]).name
        self.weights_description = (
            f"ImageNet {p['backbone']} ({weights}, loaded into a {p['image_size']}-px base)"
        )
        return self

    def order(self, seed: int) -> list[np.ndarray]:
        """Every class's pool indices in the seed's random order."""
        rng = np.random.default_rng(seed)
        return [rng.permutation(np.flatnonzero(self.pool.labels == c))
                for c in range(self.n_classes)]  # fmt: skip

    def features(self, indices: np.ndarray) -> np.ndarray:
        """Pooled features of these pool images (each extracted once)."""
        from ftutils import frozen

        missing = np.array(sorted(set(indices.tolist()) - self._features.keys()), dtype=int)
        if len(missing):
            values = frozen.activations(self.lower, self.pool.take(missing))
            self._features.update(zip(missing.tolist(), values, strict=True))
        return np.stack([self._features[i] for i in indices.tolist()])

    def test_features(self) -> np.ndarray:
        from ftutils import frozen

        if self._test_features is None:
            self._test_features = frozen.activations(self.lower, self.test)
        return self._test_features

    def augmented_features(self, indices: np.ndarray, copies: int, seed: int) -> np.ndarray:
        """Pooled features of ``copies`` random augmentations of each of these pool images."""
        import tensorflow as tf

        from ftutils import augment, data, frozen

        images = data.resized_arrays(self.pool.take(np.repeat(indices, copies)),
                                     self.params["image_size"])[0]  # fmt: skip
        layer = augment.augmentation(seed=seed)
        augmented = np.concatenate([
            np.asarray(layer(tf.constant(images[i : i + 64]), training=True))
            for i in range(0, len(images), 64)
        ])  # fmt: skip
        ds = tf.data.Dataset.from_tensor_slices(augmented.astype("float32")).batch(64)
        return frozen.activations(self.lower, ds)

    def fit(self, x, y, seed: int, class_weight=None):
        """A new head trained for ``steps`` batches on (x, y); its predicted test labels."""
        import keras
        import tensorflow as tf

        from ftutils import models, training

        p = self.params
        keras.utils.set_random_seed(seed)
        head = models.build_head(x.shape[1], self.n_classes)
        training.compile_classifier(head, "adam", p["learning_rate"])
        ds = tf.data.Dataset.from_tensor_slices((x, y.astype("int32")))
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).repeat()
        ds = ds.batch(min(p["batch_size"], len(x)), drop_remainder=True)
        head.fit(ds, epochs=1, steps_per_epoch=p["steps"], class_weight=class_weight,
                 shuffle=False, verbose=0)  # fmt: skip
        return training.predict_labels(head, self.test_features())

    def training_set(self, seed: int, run: str) -> tuple[np.ndarray, np.ndarray, dict | None]:
        """The features, labels and class weights (or None) that ``run`` trains on."""
        p = self.params
        order = self.order(seed)
        if run == "balanced":
            chosen = np.concatenate([o[: p["total_per_class"]] for o in order])
            return self.features(chosen), self.pool.labels[chosen], None
        if run.startswith("rare "):
            rare_set, method = run[len("rare ") :].split(": ")
            counts = imbalanced_counts(p, p["rare"][rare_set], self.n_classes)
            chosen = np.concatenate([o[:n] for o, n in zip(order, counts, strict=True)])
            if method == "oversampling":  # every image of a class repeated max / n_c times
                repeats = counts.max() // counts
                parts = zip(order, counts, repeats, strict=True)
                chosen = np.concatenate([np.repeat(o[:n], r) for o, n, r in parts])
            labels = self.pool.labels[chosen]
            weights = (
                balanced_weights(labels, self.n_classes) if method == "class weights" else None
            )
            return self.features(chosen), labels, weights
        method = run[len("richness: ") :]
        n, k = p["richness_per_class"], p["originals"]
        if method == "distinct":
            chosen = np.concatenate([o[:n] for o in order])
        elif method == "few originals":
            chosen = np.concatenate([o[:k] for o in order])
        elif method == "augmented copies":
            originals = np.concatenate([o[:k] for o in order])
            copies = self.augmented_features(originals, n // k - 1, seed)
            x = np.concatenate([self.features(originals), copies])
            y = np.concatenate([self.pool.labels[originals],
                                np.repeat(self.pool.labels[originals], n // k - 1)])  # fmt: skip
            return x, y, None
        elif method == "narrow":
            chosen = np.concatenate([self.narrow(o, n) for o in order])
        else:
            raise ValueError(f"unknown run {run!r}")
        return self.features(chosen), self.pool.labels[chosen], None

    def narrow(self, ordered: np.ndarray, n: int) -> np.ndarray:
        """The class's first image in this order and its n - 1 nearest pool images of the
        class, by root-mean-square pixel difference."""
        pixels = self.pool.images[ordered].reshape(len(ordered), -1).astype("float32") / 255
        distance = np.sqrt(np.mean((pixels - pixels[0]) ** 2, axis=1))
        return ordered[np.argsort(distance, kind="stable")[:n]]

    def run(self, seed: int, run: str) -> dict:
        start = time.perf_counter()
        x, y, weights = self.training_set(seed, run)
        predicted = self.fit(x, y, seed, weights)
        return {
            "seed": seed,
            "run": run,
            "images": int(len(y)),
            "per_class_images": np.bincount(y, minlength=self.n_classes).tolist(),
            "per_class": per_class_accuracy(predicted, self.test.labels, self.n_classes),
            "seconds": round(time.perf_counter() - start, 1),
        }


def per_run(rows: list[dict]) -> dict[str, np.ndarray]:
    """Every run's per-class test accuracies, one row per seed (seeds in order)."""
    table: dict[str, dict[int, list[float]]] = {}
    for row in rows:
        table.setdefault(row["run"], {})[row["seed"]] = row["per_class"]
    return {run: np.array([by_seed[s] for s in sorted(by_seed)]) for run, by_seed in table.items()}


def imbalance_summary(rows: list[dict], params: dict) -> dict[str, dict[str, np.ndarray]]:
    """Per method (balanced, imbalanced, class weights, oversampling), over seeds:

    - ``when rare`` / ``when common`` (seeds x classes): a class's test accuracy in the run
      where it is rare (common), from the two halves of the classes being rare in turn (the
      balanced run: its own accuracy in both);
    - ``rare`` / ``common``: their mean over classes (per seed);
    - ``balanced accuracy``: the mean accuracy over all classes, averaged over the two
      imbalanced runs (a balanced test set's accuracy);
    - ``at training proportions``: the accuracy on a test set with the imbalanced set's class
      proportions (each class's accuracy weighted by its share), averaged over the two runs.
    """
    runs = per_run(rows)
    n_classes = runs["balanced"].shape[1]
    out: dict[str, dict[str, np.ndarray]] = {}
    for method in ("balanced", *IMBALANCE_METHODS):
        rare = np.zeros_like(runs["balanced"])
        common = np.zeros_like(runs["balanced"])
        overall, proportional = [], []
        for name, classes in params["rare"].items():
            accuracy = runs["balanced" if method == "balanced" else f"rare {name}: {method}"]
            rare[:, classes] = accuracy[:, classes]
            others = np.setdiff1d(np.arange(n_classes), classes)
            common[:, others] = accuracy[:, others]
            share = imbalanced_counts(params, classes, n_classes)
            overall.append(accuracy.mean(axis=1))
            proportional.append(accuracy @ (share / share.sum()))
        out[method] = {
            "when rare": rare,
            "when common": common,
            "rare": rare.mean(axis=1),
            "common": common.mean(axis=1),
            "balanced accuracy": np.mean(overall, axis=0),
            "at training proportions": np.mean(proportional, axis=0),
        }
    return out


def richness_summary(rows: list[dict]) -> dict[str, np.ndarray]:
    """Per richness method, the test accuracy (mean over the balanced test set's classes) of
    every seed."""
    runs = per_run(rows)
    return {m: runs[f"richness: {m}"].mean(axis=1) for m in RICHNESS_METHODS}


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
    command = shlex.join(["python", "scripts/dataset_study.py", *argv])
    made = studies.record(command, study.params, study.weights_description)
    results = studies.ResultsFile(args.out, made, key=KEY)
    seeds = study.params["seeds"] if args.seeds is None else args.seeds
    study.test_features()
    study.features(np.arange(len(study.pool)))  # the whole pool at once
    for seed in seeds:
        for run in runs_of(study.params):
            if results.has(seed=seed, run=run):
                continue
            row = study.run(seed, run)
            results.save(row)
            print(f"seed={seed} {run}: mean {np.mean(row['per_class']):.3f} "
                  f"({row['seconds']:.0f} s)", flush=True)  # fmt: skip
    print(f"done in {time.perf_counter() - start:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
