"""With and without dropout at small data (§3.4): the seeds too long for the notebook.

    python scripts/dropout_study.py                 # every run -> data/results/dropout_study.json
    python scripts/dropout_study.py --seeds 0 --out /tmp/dropout.json

Fashion-MNIST, 20 training images per class (300 validation and 500 test images), three
models trained with dropout 0 and 0.5 over seeds 0-2, each for the same budget of steps and
kept at its best validation check: a linear head and a wide head (two hidden layers of 512
ReLU units) on cached features of the frozen ImageNet MobileNetV2 at 96 px, and the wide
network on the raw pixels; then the wide head again with twice the steps. The notebook
``03_4_dropout.ipynb`` describes the design, plots the committed results and re-runs one of
them live with :class:`Study`, whose sanity checks compare it with the file.

Each run starts by seeding every generator, so its result does not depend on the runs before
it. Results are written after every run, with the command, parameters, library versions,
machine and dates; a re-run with the same parameters and weights skips the runs the file
already holds.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
RESULTS = PROJECT / "data" / "results" / "dropout_study.json"

#: The notebook's parameters cell, in its defaults: what the committed study ran.
PARAMS = {
    "dataset": "fashion_mnist",
    "backbone": "mobilenet_v2",  # frozen ImageNet base whose pooled features the heads see
    "image_size": 96,
    "images_per_class": 20,  # small data: 200 training images for Fashion-MNIST's 10 classes
    "val_per_class": 30,  # from the training split, never the test set
    "test_per_class": 50,  # only to report
    "seeds": [0, 1, 2],
    "dropout": 0.5,  # Keras' rate = 1 - keep_prob; every setting also runs with rate 0
    "hidden": 512,  # width of the hidden layers of the wide models
    "steps": 500,  # training steps (batches of 32) for every model
    "long_steps": 1000,  # the wide head again with twice the budget
    "check_every": 100,  # steps between validation checks; the best check's weights are kept
    "learning_rate": 1e-3,
}

#: The variant a practitioner with 20 labelled images per class can run: 4 of each class's 20
#: are held out from them to validate (early stopping), so the model trains on 16 and the
#: validation set is a quarter of the training set, not one and a half times it; the test
#: images are the same. ``--small-validation`` writes it to :data:`SMALL_VAL_RESULTS`.
SMALL_VAL_PARAMS = {**PARAMS, "val_per_class": 4, "val_from_labelled": True}
SMALL_VAL_RESULTS = PROJECT / "data" / "results" / "dropout_study_small_val.json"

#: setting -> (its inputs, number of hidden layers)
SETTINGS = {
    "linear head": ("features", 0),
    "wide head": ("features", 2),
    "wide net on pixels": ("pixels", 2),
}
LONG_SETTING = "wide head"  # the one run again with `long_steps`
#: The fields that name a run, and the accuracies it reports.
KEY = ("setting", "rate", "seed", "steps")
ACCURACIES = ["train_accuracy", "val_accuracy", "test_accuracy", "last_test_accuracy"]


def plan(params: dict, seeds: list[int] | None = None) -> list[tuple[str, float, int, int]]:
    """(setting, rate, seed, steps) of every run, in the order they run (only `seeds`'s)."""
    seeds = params["seeds"] if seeds is None else seeds
    rates = [0.0, params["dropout"]]
    runs = [(s, rate, seed, params["steps"]) for s in SETTINGS for rate in rates for seed in seeds]
    return runs + [(LONG_SETTING, rate, seed, params["long_steps"]) for rate in rates
                   for seed in seeds]  # fmt: skip


def to_pixels(d):
    """Every image's pixels (Fashion-MNIST's 784), flattened and scaled to [0, 1]."""
    return (d.images.reshape(len(d), -1) / 255).astype("float32")


class Study:
    """The data, their features and one training run (:meth:`run`)."""

    def __init__(self, params: dict | None = None):
        self.params = json.loads(json.dumps(PARAMS if params is None else params))

    def prepare(self) -> Study:
        """The training, validation and test images, their pooled features of the frozen
        ImageNet base (cached on disk) and their pixels."""
        from ftutils import backbones, data, frozen, models

        p = self.params
        train_full, test_full = data.load_dataset(p["dataset"], p["image_size"])
        rest, held_out = data.split(train_full, 0.05, seed=0)
        train = data.per_class(rest, p["images_per_class"], seed=0)
        if p.get("val_from_labelled"):  # validate on some of the labelled images themselves
            train, val = data.split(train, p["val_per_class"] / p["images_per_class"], seed=0)
        else:
            val = data.per_class(held_out, p["val_per_class"], seed=0)
        test = data.per_class(test_full, p["test_per_class"], seed=0)
        extractor_model = models.build_classifier(p["backbone"], train.n_classes, p["image_size"])
        self.train, self.val, self.test = train, val, test
        self.features = tuple(
            frozen.extract_features(extractor_model, d) for d in (train, val, test)
        )
        self.inputs_of = {
            "features": self.features,
            "pixels": tuple(  # a folder streamed from disk is read into memory
                to_pixels(data.in_memory(d, p["image_size"])) for d in (train, val, test)
            ),
        }
        weights = backbones.imagenet_weights_path(p["backbone"]).name
        self.weights_description = (
            f"ImageNet {p['backbone']} ({weights}, loaded into a {p['image_size']}-px base)"
        )
        return self

    def build(self, n_inputs: int, hidden_layers: int, rate: float):
        """Dropout on the inputs of the softmax layer (linear), or after each hidden ReLU layer."""
        import keras

        from ftutils import models

        if hidden_layers == 0:
            return models.build_head(n_inputs, self.train.n_classes, rate)
        inputs = keras.Input((n_inputs,))
        x = inputs
        for _ in range(hidden_layers):
            x = keras.layers.Dense(self.params["hidden"], activation="relu")(x)
            x = keras.layers.Dropout(rate)(x) if rate else x
        outputs = keras.layers.Dense(self.train.n_classes, activation="softmax", dtype="float32")(x)
        return keras.Model(inputs, outputs)

    def run(self, setting: str, rate: float, seed: int, steps: int) -> dict:
        """Train one model for `steps` batches; accuracies at its best validation check (and
        the test accuracy after the last step), that check's step and every check's accuracy."""
        import tensorflow as tf

        from ftutils import training
        from ftutils.config import set_seed

        p = self.params
        train, val, test, check_every = self.train, self.val, self.test, p["check_every"]
        kind, hidden_layers = SETTINGS[setting]
        x_train, x_val, x_test = self.inputs_of[kind]
        start = time.perf_counter()
        set_seed(seed)
        model = self.build(x_train.shape[1], hidden_layers, rate)
        training.compile_classifier(model, "adam", p["learning_rate"])
        batches = (
            tf.data.Dataset.from_tensor_slices((x_train, train.labels))
            .shuffle(len(x_train), seed=seed, reshuffle_each_iteration=True)
            .repeat()
            .batch(32, drop_remainder=True)
        )
        keep = training.KeepBestAccuracy(x_val, val.labels, check_every)
        model.fit(
            batches,
            epochs=steps // check_every,  # one Keras "epoch" = check_every steps, then a check
            steps_per_epoch=check_every,
            shuffle=False,
            callbacks=[keep],
            verbose=0,
        )
        last_test = training.inference_accuracy(model, x_test, test.labels)  # no early stopping
        model.set_weights(keep.weights)
        return {
            "setting": setting,
            "rate": rate,
            "seed": seed,
            "steps": steps,
            "train_accuracy": training.inference_accuracy(model, x_train, train.labels),
            "val_accuracy": keep.best,
            "test_accuracy": training.inference_accuracy(model, x_test, test.labels),
            "last_test_accuracy": last_test,
            "best_step": keep.best_step,
            "val_curve": keep.curve,
            "seconds": round(time.perf_counter() - start, 1),
        }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="default: data/results/dropout_study.json")
    parser.add_argument("--seeds", type=int, nargs="+", help="default: the study's seeds")
    parser.add_argument(
        "--small-validation",
        action="store_true",
        help="the variant validating on 4 of the 20 labelled images per class (SMALL_VAL_PARAMS)"
        " -> data/results/dropout_study_small_val.json",
    )
    args = parser.parse_args(argv)

    import ftutils
    from ftutils import studies

    ftutils.setup(seed=0, verbose=False)
    start = time.perf_counter()
    study = Study(SMALL_VAL_PARAMS if args.small_validation else None).prepare()
    out = args.out or (SMALL_VAL_RESULTS if args.small_validation else RESULTS)
    command = shlex.join(["python", "scripts/dropout_study.py", *argv])
    made = studies.record(command, study.params, study.weights_description)
    results = studies.ResultsFile(out, made, key=KEY)
    runs = plan(study.params, args.seeds)
    for i, run in enumerate(runs, start=1):
        if results.has(**dict(zip(KEY, run, strict=True))):
            continue
        row = study.run(*run)
        results.save(row)
        scores = " ".join(f"{name}={row[name]:.3f}" for name in ACCURACIES)
        names = " ".join(f"{k}={v}" for k, v in zip(KEY, run, strict=True))
        print(f"[{i}/{len(runs)}] {names}: {scores} ({row['seconds']:.0f} s)", flush=True)
    print(f"{len(runs)} runs in {time.perf_counter() - start:.0f} s -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
