"""Learning from few labelled images (§4.5): the notebook's comparisons on ten seeds.

    python scripts/small_sample_study.py          # -> data/results/small_sample_study.json
    python scripts/small_sample_study.py --out /tmp/x.json --seeds 0 --kinds kshot
    python scripts/small_sample_study.py --shift   # -> data/results/small_sample_shift_study.json
    python scripts/small_sample_study.py --shift --merge /tmp/a.json /tmp/b.json  # parts run apart

The notebook ``04_5_small_sample_learning.ipynb`` runs its comparisons live on three seeds;
where their differences are near the seeds' spread, three seeds cannot settle them. This
script runs the same code on seeds 0-9 (MobileNetV2 with ImageNet weights at 96 px,
Fashion-MNIST, the notebook's default parameters):

- ``kshot``: a head on the pooled features (last layer only), then the top block and head
  (deeper fine-tuning), at 1, 5, 20 and 50 labelled images per class, a fixed budget of
  steps; train, validation and test accuracy;
- ``pseudo``: self-training with 1,000 unlabelled images at 1 and 20 labelled images per
  class; test accuracy with and without, and the accuracy of both heads on the notebook's
  validation set (30 per class) and on a *small* one, no larger than the training set;
- ``early stop``: the head trained for ``es_steps`` steps at 1, 5 and 20 images per class,
  its validation loss measured every ``converge_every`` steps on the notebook's validation set
  and on the small one: the step each would stop at (the minimum of its validation loss),
  the test accuracy there, and the validation accuracy each would report.

With ``--shift`` it runs instead the robustness part (§4.5: 保证模型的鲁棒性), into its own
file: the ``kshot`` models at ``shift_shots`` and the ``pseudo`` heads at ``pseudo_shots``,
the same code and seeds, each scored on the clean test set and on shifted copies of it
(``SHIFT_PARAMS["shifts"]``: the four held-out families of §3.5, ``ftutils.shift_families``,
that no training run here sees).

The small validation set of a seed holds as many images per class as the training set
(the first k of ``small_val_max`` per class drawn for the seed from the held-out images
outside the notebook's validation set): the validation set a practitioner who has only
2k labelled images per class could keep aside. Results are written after every run (a
re-run with the same parameters skips what the file already holds), with the command,
parameters, library versions, machine and dates.
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
RESULTS = PROJECT / "data" / "results" / "small_sample_study.json"

#: The notebook's default parameters, on ten seeds, and the small validation sets.
PARAMS = {
    "dataset": "fashion_mnist",
    "backbone": "mobilenet_v2",
    "image_size": 96,
    "cut": "block_16_expand",
    "shots": [1, 5, 20, 50],
    "seeds": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    "val_per_class": 30,
    "test_per_class": 50,
    "n_unlabelled": 1000,
    "head_lr": 1e-3,
    "head_steps": 150,
    "finetune_lr": 1e-4,
    "finetune_steps": 60,
    "pseudo_shots": [1, 20],
    "pseudo_rounds": 3,
    "pseudo_per_class": 20,
    "small_val_max": 20,  # per class and seed; a run with k shots uses the first k of them
    "es_shots": [1, 5, 20],
    "es_steps": 400,
    "converge_every": 5,
}
KINDS = ["early stop", "kshot", "pseudo"]  # the order of the runs of one seed

#: The robustness part (``--shift``): its own file, the parameters above plus these.
SHIFT_RESULTS = PROJECT / "data" / "results" / "small_sample_shift_study.json"
SHIFT_PARAMS = {
    "shift_shots": [1, 5, 20],
    # the held-out shift families of 03_5 (its HELD_OUT), applied once to the test images
    "shifts": {
        "blur": {"function": "gaussian_blur", "sigma": 1.0},
        "inverted": {"function": "invert"},
        "noise": {"function": "gaussian_noise", "sigma": 40.0, "seed": 9},
        "crop": {"function": "center_crop", "fraction": 0.6},
    },
}
SHIFT_KINDS = ["kshot", "pseudo"]


def shifted_images(images: np.ndarray, spec: dict) -> np.ndarray:
    """``images`` under one shift of ``SHIFT_PARAMS["shifts"]`` (``ftutils.shift_families``)."""
    from ftutils import shift_families

    arguments = {k: v for k, v in spec.items() if k != "function"}
    return getattr(shift_families, spec["function"])(images, **arguments)


def shot_indices(labels: np.ndarray, shots: int, n_classes: int) -> np.ndarray:
    """The first `shots` images of every class (nested k-shot subsets), as in the notebook."""
    return np.concatenate([np.flatnonzero(labels == c)[:shots] for c in range(n_classes)])


class Study:
    """The notebook's data split, the cut network, the stored activations and the runs."""

    def __init__(self, params: dict | None = None):
        self.params = json.loads(json.dumps(PARAMS if params is None else params))

    def build(self) -> Study:
        import keras

        from ftutils import data, frozen, models

        p = self.params
        train_all, test_all = data.load_dataset(p["dataset"], p["image_size"])
        self.n_classes = train_all.n_classes
        pool, held_out = data.split(train_all, 0.1, seed=0)
        labelled_pool, unlabelled_pool = data.split(pool, 0.5, seed=0)
        self.val = data.per_class(held_out, p["val_per_class"], seed=0)
        self.test = data.per_class(test_all, p["test_per_class"], seed=0)
        rng = np.random.default_rng(0)
        self.unlabelled = unlabelled_pool.take(
            rng.choice(len(unlabelled_pool), p["n_unlabelled"], replace=False)
        )
        self.labelled = {
            s: data.per_class(labelled_pool, max(p["shots"]), seed=s) for s in p["seeds"]
        }
        size = p["image_size"]  # a folder's files are decoded to compare pixels
        in_val = data.shared_images(data.in_memory(self.val, size), data.in_memory(held_out, size))
        rest = held_out.take(np.setdiff1d(np.arange(len(held_out)), in_val))
        self.small_val = {
            s: data.per_class(rest, p["small_val_max"], seed=10_000 + s) for s in p["seeds"]
        }

        self.model = models.build_classifier(p["backbone"], self.n_classes, p["image_size"])
        self.base = models.base_of(self.model)
        self.split = frozen.cut(self.model, p["cut"])
        sets = {"val": self.val, "test": self.test, "unlabelled": self.unlabelled}
        self.shifts = list(p.get("shifts", {}))
        test_pixels = data.in_memory(self.test, size)  # a streamed folder's files decoded
        for name, spec in p.get("shifts", {}).items():
            shifted = shifted_images(test_pixels.images, spec)
            sets[f"test {name}"] = data.ImageData(shifted, self.test.labels, self.test.class_names)
        sets.update({f"seed {s}": self.labelled[s] for s in p["seeds"]})
        sets.update({f"small val {s}": self.small_val[s] for s in p["seeds"]})
        self.acts = {
            name: frozen.activations(self.split.lower, part) for name, part in sets.items()
        }
        self.pooled = {
            name: self.split.pooled.predict(a, verbose=0) for name, a in self.acts.items()
        }
        self.labels = {name: part.labels for name, part in sets.items()}
        self.initial_weights = self.model.get_weights()
        self.dropout_states = [
            layer.seed_generator.state
            for layer in self.split.upper.layers
            if hasattr(layer, "seed_generator")
        ]
        self.loss = keras.losses.SparseCategoricalCrossentropy()
        return self

    def subset(self, seed: int, shots: int):
        """The k-shot training set of `seed`: pooled features, activations, labels."""
        name = f"seed {seed}"
        idx = shot_indices(self.labels[name], shots, self.n_classes)
        return self.pooled[name][idx], self.acts[name][idx], self.labels[name][idx]

    def small(self, seed: int, shots: int):
        """The small validation set of `seed` for `shots`: pooled features and labels."""
        name = f"small val {seed}"
        idx = shot_indices(self.labels[name], shots, self.n_classes)
        return self.pooled[name][idx], self.labels[name][idx]

    def new_head(self, seed: int, steps: int, x, y):
        """A new head (seeded), Adam at head_lr for `steps` steps on (x, y), as the notebook."""
        import keras

        from ftutils import frozen, models, training

        keras.utils.set_random_seed(seed)
        head = models.build_head(x.shape[1], self.n_classes)
        training.compile_classifier(head, "adam", self.params["head_lr"])
        if steps:
            frozen.fit_steps(head, x, y, steps, seed=seed)
        return head

    def _shifted(self, arrays: dict) -> list:
        """(part, inputs, labels) of each shifted test set (none without ``shifts``)."""
        return [(f"test {n}", arrays[f"test {n}"], self.labels["test"]) for n in self.shifts]

    def run_kshot(self, shots: int, seed: int) -> dict:
        """The notebook's run_shots: the head alone, then the top block and head."""
        from ftutils import backbones, frozen, models, training

        p = self.params
        x_pooled, x_acts, y = self.subset(seed, shots)
        head = self.new_head(seed, p["head_steps"], x_pooled, y)
        result = {}
        for part, x, labels in [
            ("train", x_pooled, y),
            ("val", self.pooled["val"], self.labels["val"]),
            ("test", self.pooled["test"], self.labels["test"]),
            *self._shifted(self.pooled),
        ]:
            result[f"last layer {part}"] = training.accuracy(head, x, labels)
        self.model.set_weights(self.initial_weights)
        models.copy_head(head, self.model)
        for state in self.dropout_states:
            state.assign([seed, 0])
        backbones.unfreeze(self.base, from_layer=p["cut"])
        training.compile_classifier(self.split.upper, "adam", p["finetune_lr"])
        frozen.fit_steps(self.split.upper, x_acts, y, p["finetune_steps"], seed=seed)
        backbones.freeze(self.base)
        for part, x, labels in [
            ("train", x_acts, y),
            ("val", self.acts["val"], self.labels["val"]),
            ("test", self.acts["test"], self.labels["test"]),
            *self._shifted(self.acts),
        ]:
            result[f"top block {part}"] = training.accuracy(self.split.upper, x, labels)
        return result

    def run_pseudo(self, shots: int, seed: int) -> dict:
        """The notebook's run_pseudo, with both heads also scored on the small validation set."""
        from ftutils import semi_supervised, training

        p = self.params
        x, _, y = self.subset(seed, shots)
        heads = []

        def fit(features, labels):
            head = self.new_head(seed, p["head_steps"], features, labels)
            heads.append(head)
            return lambda z: np.asarray(head(z, training=False))

        _, rounds = semi_supervised.self_train(
            fit, x, y, self.pooled["unlabelled"], p["pseudo_rounds"], p["pseudo_per_class"]
        )
        x_small, y_small = self.small(seed, shots)

        def score(head, name):
            return training.accuracy(head, self.pooled[name], self.labels[name])

        shifted = {
            f"{which} test {n}": score(head, f"test {n}")
            for n in self.shifts
            for which, head in [("labelled only", heads[0]), ("self-trained", heads[-1])]
        }
        return shifted | {
            "labelled only": score(heads[0], "test"),
            "self-trained": score(heads[-1], "test"),
            "val labelled only": score(heads[0], "val"),
            "val self-trained": score(heads[-1], "val"),
            "small val labelled only": training.accuracy(heads[0], x_small, y_small),
            "small val self-trained": training.accuracy(heads[-1], x_small, y_small),
            "pseudo-label accuracy": [
                float(np.mean(r.labels == self.labels["unlabelled"][r.indices])) for r in rounds
            ],
        }

    def run_early_stop(self, shots: int, seed: int) -> dict:
        """The head for es_steps steps (Adam at head_lr, batches of min(32, n) reshuffled on
        every pass, as the notebook's convergence probe); where each validation set's loss is
        lowest, the test accuracy there and the validation accuracy it would report."""
        import keras
        import tensorflow as tf

        p = self.params
        x, _, y = self.subset(seed, shots)
        x_small, y_small = self.small(seed, shots)
        head = self.new_head(seed, 0, x, y)
        optimizer = keras.optimizers.Adam(p["head_lr"])

        @tf.function
        def step(xb, yb):
            with tf.GradientTape() as tape:
                loss = self.loss(yb, head(xb, training=True))
            optimizer.apply(tape.gradient(loss, head.trainable_weights), head.trainable_weights)

        sets = {
            "val": (self.pooled["val"], self.labels["val"]),
            "small val": (x_small, y_small),
            "test": (self.pooled["test"], self.labels["test"]),
        }
        trace = {f"{name} {m}": [] for name in sets for m in ("loss", "accuracy")}
        rng = np.random.default_rng(seed)
        batch, queue = min(32, len(x)), np.array([], dtype=int)
        for number in range(1, p["es_steps"] + 1):
            if len(queue) < batch:
                queue = np.concatenate([queue, rng.permutation(len(x))])
            take, queue = queue[:batch], queue[batch:]
            step(tf.constant(x[take]), tf.constant(y[take]))
            if number % p["converge_every"] == 0:
                for name, (features, labels) in sets.items():
                    probabilities = head(tf.constant(features), training=False)
                    trace[f"{name} loss"].append(float(self.loss(labels, probabilities)))
                    trace[f"{name} accuracy"].append(
                        float(np.mean(np.argmax(probabilities, axis=1) == labels))
                    )
        result = {}
        for name in ("val", "small val"):
            at = int(np.argmin(trace[f"{name} loss"]))
            result[f"{name}: steps"] = (at + 1) * p["converge_every"]
            result[f"{name}: test"] = trace["test accuracy"][at]
            result[f"{name}: reported"] = trace[f"{name} accuracy"][at]
        return result

    def run(self, kind: str, shots: int, seed: int) -> dict:
        runner = {"kshot": self.run_kshot, "pseudo": self.run_pseudo,
                  "early stop": self.run_early_stop}[kind]  # fmt: skip
        start = time.perf_counter()
        result = runner(shots, seed)
        return {**result, "seconds": time.perf_counter() - start}


def shift_scores(runs: list[dict], shifts, chance: float):
    """The robustness part's runs as one row per model, size, seed and test set: the clean
    test accuracy, the shifted one, the drop (clean - shifted) and the share of the accuracy
    above chance that is kept, (shifted - chance) / (clean - chance); the set "mean of
    shifts" averages the shifted accuracies first."""
    import pandas as pd

    models = {
        "kshot": {"last layer": "last layer test", "top block": "top block test"},
        "pseudo": {"labelled only": "labelled only", "self-trained": "self-trained"},
    }
    rows = []
    for run in runs:
        for model, clean_key in models[run["kind"]].items():
            clean = run[clean_key]
            prefix = clean_key if run["kind"] == "kshot" else f"{model} test"
            shifted = {name: run[f"{prefix} {name}"] for name in shifts}
            shifted["mean of shifts"] = float(np.mean(list(shifted.values())))
            for name, value in shifted.items():
                rows.append({"model": model, "shots": run["shots"], "seed": run["seed"],
                             "test set": name, "clean": clean, "shifted": value,
                             "drop": clean - value,
                             "kept": (value - chance) / (clean - chance)})  # fmt: skip
    return pd.DataFrame(rows)


def merge(parts: list[Path], out: Path, command: str, note: str = "") -> dict:
    """One results file from parts run as parallel processes of the same parameters (each
    with ``--seeds``): the first part's record, every part's runs, the parts listed."""
    from ftutils import studies

    contents = [json.loads(Path(part).read_text()) for part in parts]
    params = contents[0]["provenance"]["parameters"]
    if any(c["provenance"]["parameters"] != params for c in contents):
        raise ValueError("the parts ran with different parameters: they cannot be merged")
    made = dict(contents[0]["provenance"], command=command)
    made["run_order"] = (f"{len(contents)} processes in parallel (the parts), each seed by seed: "
                         + contents[0]["provenance"]["run_order"].split(": ", 1)[-1])  # fmt: skip
    if note:
        made["note"] = note
    made["parts"] = [{k: c["provenance"][k] for k in ("command", "started", "finished")}
                     | {"runs": len(c["runs"])} for c in contents]  # fmt: skip
    made["started"] = min(c["provenance"]["started"] for c in contents)
    made["finished"] = max(c["provenance"]["finished"] for c in contents)
    runs = sorted((r for c in contents for r in c["runs"]),
                  key=lambda r: (r["seed"], SHIFT_KINDS.index(r["kind"]), r["shots"]))  # fmt: skip
    result = {"provenance": made, "runs": runs}
    studies.write_json(out, result)
    return result


def plan(params: dict, seeds=None, kinds=None) -> list[tuple[str, int, int]]:
    """(kind, shots, seed) of every run, seed by seed; the optional lists keep only those.
    Parameters with ``shifts`` plan the robustness part: ``kshot`` at ``shift_shots`` and
    ``pseudo``, no ``early stop``."""
    shifting = "shifts" in params
    sizes = {"kshot": params["shift_shots"] if shifting else params["shots"],
             "pseudo": params["pseudo_shots"], "early stop": params["es_shots"]}  # fmt: skip
    return [
        (kind, shots, seed)
        for seed in params["seeds"]
        for kind in (SHIFT_KINDS if shifting else KINDS)
        for shots in sizes[kind]
        if (seeds is None or seed in seeds) and (kinds is None or kind in kinds)
    ]


def run_to_file(out: Path, params: dict, runs: list, command: str) -> dict:
    """Run `runs`, writing `out` after each one (a file of the same parameters is resumed)."""
    from ftutils import backbones, studies

    params = json.loads(json.dumps(params))
    weights = backbones.imagenet_weights_path(params["backbone"]).name
    result = {
        "provenance": {
            **studies.record(
                command, params,
                f"ImageNet {params['backbone']} ({weights}, loaded into a "
                f"{params['image_size']}-px base)",
            ),
            "run_order": "one process, seed by seed: "
            + ", ".join(SHIFT_KINDS if "shifts" in params else KINDS),
        },
        "runs": [],
    }  # fmt: skip
    if out.is_file():
        previous = json.loads(out.read_text())
        if previous["provenance"]["parameters"] == params:
            result["runs"] = previous["runs"]
            result["provenance"]["started"] = previous["provenance"]["started"]
    done = {(r["kind"], r["shots"], r["seed"]) for r in result["runs"]}
    todo = [run for run in runs if run not in done]
    if not todo:
        return result
    study = Study(params).build()
    for i, (kind, shots, seed) in enumerate(todo, start=1):
        row = {"kind": kind, "shots": shots, "seed": seed, **study.run(kind, shots, seed)}
        result["runs"].append(row)
        result["provenance"]["finished"] = studies.now()
        studies.write_json(out, result)
        shown = {k: v for k, v in row.items() if isinstance(v, float)}
        print(f"[{i}/{len(todo)}] {kind} shots={shots} seed={seed} ->",
              " ".join(f"{k}={v:.3f}" for k, v in shown.items()), flush=True)  # fmt: skip
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--seeds", type=int, nargs="+", help="only these seeds")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, help="only these runs")
    parser.add_argument(
        "--shift", action="store_true",
        help="the robustness part (SHIFT_PARAMS) instead, by default into SHIFT_RESULTS",
    )  # fmt: skip
    parser.add_argument("--merge", type=Path, nargs="+", help="part files to join into --out")
    parser.add_argument("--note", default="", help="with --merge: how the parts were made")
    args = parser.parse_args(argv)

    import ftutils

    ftutils.setup(seed=0, verbose=False)
    command = shlex.join(["python", "scripts/small_sample_study.py", *argv])
    params = PARAMS | SHIFT_PARAMS if args.shift else PARAMS
    out = SHIFT_RESULTS if args.shift and args.out == RESULTS else args.out
    if args.merge:
        merge(args.merge, out, command, args.note)
        return 0
    runs = plan(params, args.seeds, args.kinds)
    start = time.perf_counter()
    run_to_file(out, params, runs, command)
    print(f"{len(runs)} runs in {time.perf_counter() - start:.0f} s -> {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
