"""Source closeness at a fixed source size (§2.2, 样本分布相同): does fine-tuning gain more over
fixed features when the source is close to the target?

    python scripts/closeness_study.py            # the study -> data/results/closeness_study.json
    python scripts/closeness_study.py --out /tmp/x.json --seeds 0 --sources near

The target is the book's: Fashion-MNIST classes 5-9, ``target_per_class`` training images per
class. One small convolutional network (two conv-pool blocks, then a fully connected layer
whose ``fc_units`` outputs are the features, no BatchNormalization) is pretrained on each
source, every source holding the same number of images (``source_per_class`` x 5 classes) and
pretrained for the same number of steps, so closeness is not confounded with the source's size:

- ``same``: Fashion-MNIST classes 5-9 themselves (other training images than the target's
  pool): source and target samples come from the same distribution;
- ``near``: Fashion-MNIST classes 0-4 (T-shirt, trouser, pullover, dress, coat): the same kind
  of images, other classes;
- ``far``: the same classes 0-4 with their pixels shuffled by one fixed permutation: the same
  pixel values and the same number of classes, but no spatial structure a convolution could
  reuse on the target;
- ``none``: no pretraining (random weights), the reference.

On the target, from each pretrained network, with the same budget of ``steps`` training steps:
*fixed features* (every pretrained layer frozen, a new softmax head trained for all the steps)
and *fine-tuning* (the head first for ``head_steps``, then every layer for the rest at a lower
rate, chosen on validation from ``finetune_lrs``). Each seed draws another source subset,
initialisation, target subset and shuffling. Results are written after every (source, seed),
with the command, parameters, versions, machine and dates; a re-run resumes the file.
The notebook ``02_2_finetuning_vs_transfer.ipynb`` plots them and re-runs one (source, seed).
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
RESULTS = PROJECT / "data" / "results" / "closeness_study.json"

SOURCES = ["same", "near", "far", "none"]
PARAMS = {
    "target_classes": [5, 6, 7, 8, 9],  # the book's target split
    "source_classes": {"same": [5, 6, 7, 8, 9], "near": [0, 1, 2, 3, 4], "far": [0, 1, 2, 3, 4]},
    "sources": SOURCES,
    "source_per_class": 400,  # every source: 2,000 images
    "pretrain_steps": 300,  # every source: the same pretraining budget
    "pretrain_lr": 1e-3,  # Adam
    "pretrain_batch": 64,
    "fc_units": 128,  # the fully connected layer whose outputs are the features
    "target_per_class": 10,  # little target data: 50 images
    "val_per_class": 20,
    "test_per_class": 200,  # 1,000 test images
    "steps": 150,  # target training steps of both methods: the equal budget
    "head_steps": 75,  # fine-tuning trains the head alone first for this many
    "batch_size": 25,
    "head_lr": 3e-3,  # Adam, the new head
    "finetune_lrs": [1e-4, 1e-3],  # Adam, every layer; the notebook picks one on validation
    "permutation_seed": 1234,  # the far source's fixed pixel permutation
    "seeds": [0, 1, 2, 3, 4],
}
RESULT_KEYS = ["source_test", "features_val", "features_test", "finetune_val", "finetune_test"]


def build_network(n_classes: int, fc_units: int):
    """The small network: two conv-pool blocks, a fully connected feature layer, a softmax."""
    import keras

    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(32, 3, activation="relu", name="conv1")(x)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(64, 3, activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    features = keras.layers.Dense(fc_units, activation="relu", name="fc")(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="classifier")(features)
    return keras.Model(inputs, outputs, name="small_cnn")


def permute_pixels(images: np.ndarray, seed: int) -> np.ndarray:
    """Every image's pixels shuffled by the same fixed permutation (``seed``)."""
    n, h, w = images.shape[:3]
    order = np.random.default_rng(seed).permutation(h * w)
    return images.reshape(n, h * w, *images.shape[3:])[:, order].reshape(images.shape)


class Study:
    """The data (target pool, validation, test, the source pools) and the runs."""

    def __init__(self, params: dict | None = None):
        self.params = json.loads(json.dumps(PARAMS if params is None else params))

    def load_data(self) -> Study:
        from ftutils import data

        p = self.params
        train, test = data.load_fashion_mnist()
        target_train = data.select_classes(train, p["target_classes"])
        # the target's images come from one half of its classes' training images, the "same"
        # source's from the other half: no source image is a target, validation or test image
        self.target_half, same_half = data.split(target_train, 0.5, seed=0)
        self.pool, held_out = data.split(self.target_half, 0.1, seed=0)
        self.val = data.per_class(held_out, p["val_per_class"], seed=0)
        self.test = data.per_class(
            data.select_classes(test, p["target_classes"]), p["test_per_class"], seed=0
        )
        self.source_pools = {}
        for name, classes in p["source_classes"].items():
            if classes == p["target_classes"]:
                self.source_pools[name] = same_half
            else:
                self.source_pools[name] = data.select_classes(train, classes)
        self.source_test = {
            name: data.per_class(data.select_classes(test, classes), 100, seed=0)
            for name, classes in p["source_classes"].items()
        }
        return self

    def source_images(self, name: str, images: np.ndarray) -> np.ndarray:
        """The images as the source `name` presents them (the far source's are permuted)."""
        if name == "far":
            return permute_pixels(images, self.params["permutation_seed"])
        return images

    def pretrain(self, name: str, seed: int):
        """The network pretrained on source `name` (random weights for ``none``) and its
        accuracy on 500 of the source's test images (None for ``none``)."""
        from ftutils import data, frozen, training
        from ftutils.config import set_seed

        p = self.params
        set_seed(seed)
        network = build_network(5, p["fc_units"])
        if name == "none":
            return network, None
        source = data.per_class(self.source_pools[name], p["source_per_class"], seed=seed)
        training.compile_classifier(network, "adam", p["pretrain_lr"])
        x = self.source_images(name, source.images)[..., None]
        frozen.fit_steps(network, x, source.labels, p["pretrain_steps"], p["pretrain_batch"], seed)
        test = self.source_test[name]
        x_test = self.source_images(name, test.images)[..., None]
        return network, training.accuracy(network, x_test, test.labels)

    def target_network(self, pretrained, seed: int):
        """A copy of `pretrained` with a new random head (seeded), its body frozen."""
        import keras

        from ftutils.config import set_seed

        network = build_network(5, self.params["fc_units"])
        network.set_weights(pretrained.get_weights())
        set_seed(10_000 + seed)  # the head's draw depends on the seed only
        head = network.get_layer("classifier")
        fresh = keras.layers.Dense(5, activation="softmax")
        fresh.build((None, self.params["fc_units"]))
        head.set_weights(fresh.get_weights())
        for layer in network.layers:
            layer.trainable = layer.name == "classifier"
        return network

    def scores(self, network) -> tuple[float, float]:
        from ftutils import training

        return tuple(
            training.accuracy(network, d.images[..., None], d.labels) for d in (self.val, self.test)
        )

    def run(self, name: str, seed: int) -> dict:
        """Pretrain on source `name` with `seed`, then fixed features and fine-tuning (one per
        rate of ``finetune_lrs``) on the seed's target subset; their accuracies."""
        from ftutils import data, frozen, training
        from ftutils.config import set_seed

        p = self.params
        start = time.perf_counter()
        pretrained, source_test = self.pretrain(name, seed)
        subset = data.per_class(self.pool, p["target_per_class"], seed=seed)
        x, y = subset.images[..., None], subset.labels

        row = {"source": name, "seed": seed, "source_test": source_test}
        network = self.target_network(pretrained, seed)
        training.compile_classifier(network, "adam", p["head_lr"])
        set_seed(seed)
        frozen.fit_steps(network, x, y, p["steps"], p["batch_size"], seed)
        row["features_val"], row["features_test"] = self.scores(network)

        row["finetune_val"], row["finetune_test"] = {}, {}
        for lr in p["finetune_lrs"]:
            network = self.target_network(pretrained, seed)
            training.compile_classifier(network, "adam", p["head_lr"])
            set_seed(seed)
            frozen.fit_steps(network, x, y, p["head_steps"], p["batch_size"], seed)
            for layer in network.layers:
                layer.trainable = True
            training.compile_classifier(network, "adam", lr)
            frozen.fit_steps(network, x, y, p["steps"] - p["head_steps"], p["batch_size"],
                             seed + 1)  # fmt: skip
            val, test = self.scores(network)
            row["finetune_val"][f"{lr:g}"], row["finetune_test"][f"{lr:g}"] = val, test
        row["seconds"] = time.perf_counter() - start
        return row


def chosen_rates(runs: list[dict]) -> dict[str, str]:
    """For each source, the fine-tuning rate (a key of ``finetune_val``) whose validation
    accuracy is highest on the mean over the seeds: the choice is made on validation only."""
    rates = {}
    for name in dict.fromkeys(r["source"] for r in runs):
        rows = [r for r in runs if r["source"] == name]
        means = {
            lr: np.mean([r["finetune_val"][lr] for r in rows]) for lr in rows[0]["finetune_val"]
        }
        rates[name] = max(means, key=means.get)
    return rates


def per_seed(runs: list[dict]):
    """One row per (source, seed): fixed features' and fine-tuning's accuracies (fine-tuning
    at the source's rate from :func:`chosen_rates`) and fine-tuning's advantage on test."""
    import pandas as pd

    rates = chosen_rates(runs)
    frame = pd.DataFrame(
        [
            {
                "source": r["source"],
                "seed": r["seed"],
                "source_test": r["source_test"],
                "rate": rates[r["source"]],
                "features_val": r["features_val"],
                "finetune_val": r["finetune_val"][rates[r["source"]]],
                "features_test": r["features_test"],
                "finetune_test": r["finetune_test"][rates[r["source"]]],
            }
            for r in runs
        ]
    )
    frame["advantage"] = frame["finetune_test"] - frame["features_test"]
    return frame.set_index(["source", "seed"]).sort_index()


def plan(params: dict, seeds=None, sources=None) -> list[tuple[str, int]]:
    """(source, seed) of every run, in order: for each seed every source."""
    return [
        (name, seed)
        for seed in params["seeds"]
        for name in params["sources"]
        if (seeds is None or seed in seeds) and (sources is None or name in sources)
    ]


def provenance(command: str, params: dict) -> dict:
    from ftutils import studies

    return studies.record(
        command, params, "none: every network is pretrained here on its source (or random)"
    )


def run_to_file(out: Path, params: dict, runs: list, command: str, study: Study | None = None):
    """Run `runs` (from :func:`plan`), writing `out` after each; resumes a file of the same
    study (``ftutils.studies.ResultsFile``). Returns the file's content."""
    from ftutils import studies

    results = studies.ResultsFile(out, provenance(command, params), key=("source", "seed"))
    todo = [(name, seed) for name, seed in runs if not results.has(source=name, seed=seed)]
    if todo:
        study = study or Study(params).load_data()
    for i, (name, seed) in enumerate(todo, start=1):
        row = study.run(name, seed)
        results.save(row)
        print(f"[{i}/{len(todo)}] {json.dumps(row)}", flush=True)
    return results.content


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--seeds", type=int, nargs="+", help="only these seeds")
    parser.add_argument("--sources", nargs="+", choices=SOURCES, help="only these sources")
    args = parser.parse_args(argv)

    import ftutils

    ftutils.setup(seed=0, verbose=False)
    command = shlex.join(["python", "scripts/closeness_study.py", *argv])
    start = time.perf_counter()
    runs = plan(PARAMS, args.seeds, args.sources)
    run_to_file(args.out, PARAMS, runs, command)
    print(f"{len(runs)} runs in {time.perf_counter() - start:.0f} s -> {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
