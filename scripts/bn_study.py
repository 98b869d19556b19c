"""BatchNorm frozen vs trainable, fine-tuning on batches of 8 (§4.3): too long for the notebook.

    python scripts/bn_study.py                 # every seed -> data/results/bn_study.json
    python scripts/bn_study.py --seeds 0 --out /tmp/bn.json

MobileNetV2 with ImageNet weights at 96 px (a BatchNormalization after every convolution, as
in ResNet50; ResNet50's own weights are not offline, and a backbone without ImageNet weights
is pretrained on the source split, ``ftutils.transfer.pretrained_weights``), on Fashion-MNIST's
classes 5-9 (20 images per class per seed: 16 to train, 4 to validate; 500 test images). For
each seed a new head is trained on the frozen base's features ("head only"); from there two
arms fine-tune the base from ``unfreeze_from`` up for the same steps on the same batches of 8,
with the BatchNormalization layers in that part frozen ("BN frozen") or trainable ("BN
trainable"). The notebook ``04_3_resnet.ipynb`` describes the design, shows the committed
results and re-runs the first seed live with :class:`Study`, whose sanity checks compare it
with the file.

Each seed's run starts from the same weights and generator states, so its result does not
depend on the seeds run before it. Results are written after every seed, with the command,
parameters, library versions, machine and dates; a re-run with the same parameters and
weights skips the seeds the file already holds.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
RESULTS = PROJECT / "data" / "results" / "bn_study.json"

#: The notebook's parameters cell, in its defaults: what the committed study ran.
PARAMS = {
    "backbone": "mobilenet_v2",  # BatchNorm after every convolution, as in ResNet50
    "image_size": 96,
    "unfreeze_from": "block_13_expand",  # the last 4 blocks + Conv_1
    "target_per_class": 20,  # per seed: 16 for training, 4 for validation
    "test_per_class": 100,  # scored at the end, never used for a choice
    "head_epochs": 30,  # the new head on cached features of the frozen base
    "head_lr": 1e-2,
    "finetune_steps": 100,  # 10 passes over the 80 training images at batch 8
    "finetune_lr": 1e-4,
    "batch_size": 8,  # small batches: where trainable BatchNorm hurts
    "seeds": [0, 1, 2, 3, 4],
    # used only when the backbone has no ImageNet weights at hand (e.g. "resnet50" offline)
    "source_per_class": 150,
    "source_epochs": 2,
    "source_lr": 1e-3,
}

#: The two fine-tuning arms, and every run of a seed's row (the arms start from "head only").
ARMS = ("BN frozen", "BN trainable")
RUNS = ("head only", *ARMS)


def reset_optimizer(model):
    """Zero a compiled model's optimizer state (step count, moments), keeping its learning rate."""
    import tensorflow as tf

    for variable in model.optimizer.variables:
        if variable.name != "learning_rate":
            variable.assign(tf.zeros_like(variable))


def training_mode_accuracy(model, part, x, labels, seed, batch_size):
    """Accuracy above the cut with BN in training mode (each batch of `batch_size` normalised
    with its own statistics), dropout off; trainable BN layers' moving statistics are restored."""
    import numpy as np

    from ftutils import batchnorm

    bns = batchnorm.layers_of(part.pooled)
    saved = [(bn.moving_mean.numpy(), bn.moving_variance.numpy()) for bn in bns]
    order = np.random.default_rng(seed).permutation(len(x))
    correct = 0
    for i in range(0, len(x), batch_size):
        batch = order[i : i + batch_size]
        probabilities = model.get_layer("classifier")(part.pooled(x[batch], training=True))
        correct += int(np.sum(np.argmax(np.asarray(probabilities), -1) == labels[batch]))
    for bn, (mean, variance) in zip(bns, saved, strict=True):
        bn.moving_mean.assign(mean)
        bn.moving_variance.assign(variance)
    return correct / len(x)


def generator_states(model) -> list:
    """The model's variables that ``get_weights`` leaves out: its dropout's random state."""
    weights = {id(variable) for variable in model.weights}
    return [variable for variable in model.variables if id(variable) not in weights]


class Study:
    """The weights, the data, the two arms' classifiers and one seed's three runs (:meth:`run`)."""

    def __init__(self, params: dict | None = None):
        self.params = json.loads(json.dumps(PARAMS if params is None else params))

    def prepare(self) -> Study:
        """The pretrained weights, the target data, one classifier per arm (compiled once;
        every seed resets its weights) and the test images' activations below the cut."""
        import keras

        from ftutils import backbones, data, frozen, models, training, transfer
        from ftutils.config import set_seed

        p = self.params
        self.weights, self.weights_description = transfer.pretrained_weights(
            p["backbone"],
            p["image_size"],
            per_class=p["source_per_class"],
            epochs=p["source_epochs"],
            learning_rate=p["source_lr"],
        )
        self.target, target_test = data.load_fashion_mnist(list(transfer.TARGET_CLASSES))
        self.test = data.per_class(target_test, p["test_per_class"], seed=0)
        self.n_classes = len(transfer.TARGET_CLASSES)
        self.classifiers = {}
        for arm in ARMS:
            set_seed(0)
            model = models.build_classifier(
                p["backbone"], self.n_classes, p["image_size"], weights=self.weights
            )
            base = models.base_of(model)
            part = frozen.cut(model, p["unfreeze_from"])  # below the cut: computed once per image
            backbones.unfreeze(base, from_layer=p["unfreeze_from"])  # keeps every BN layer frozen
            if arm == "BN trainable":  # what base.trainable = True does to the unfrozen BN layers
                first = [layer.name for layer in base.layers].index(p["unfreeze_from"])
                for layer in base.layers[first:]:
                    if isinstance(layer, keras.layers.BatchNormalization):
                        layer.trainable = True
            training.compile_classifier(part.upper, "adam", p["finetune_lr"])
            self.classifiers[arm] = (model, base, part)
        self.generator_states = {
            arm: [(state, state.numpy()) for state in generator_states(model)]
            for arm, (model, _, _) in self.classifiers.items()
        }
        model0, _, part0 = self.classifiers["BN frozen"]
        self.initial = model0.get_weights()
        self.x_test = frozen.activations(part0.lower, self.test)
        return self

    def run(self, seed: int) -> dict:
        """`seed`'s training images, head and batch order: for each run (head only, then both
        arms from its weights) test, validation and training accuracies; for each arm the
        test predictions it changed, its BN statistics' drift and training/inference gap."""
        import numpy as np

        from ftutils import batchnorm, data, frozen, models, training
        from ftutils.config import set_seed

        p = self.params
        test, x_test, batch_size = self.test, self.x_test, p["batch_size"]
        started = time.perf_counter()
        model0, _, part0 = self.classifiers["BN frozen"]
        train, val = data.split(data.per_class(self.target, p["target_per_class"], seed), 0.2, seed)
        x_train, x_val = (frozen.activations(part0.lower, d) for d in (train, val))
        model0.set_weights(self.initial)
        set_seed(seed)
        head, _ = frozen.train_head(
            part0.pooled.predict(x_train, verbose=0),
            train.labels,
            part0.pooled.predict(x_val, verbose=0),
            val.labels,
            self.n_classes,
            epochs=p["head_epochs"],
            learning_rate=p["head_lr"],
        )
        models.copy_head(head, model0)
        start = model0.get_weights()  # both arms start here
        start_predictions = training.predict_labels(part0.upper, x_test)
        row = {
            "seed": seed,
            "training images": len(train),
            "head only": {
                "test accuracy": float(np.mean(start_predictions == test.labels)),
                "val accuracy": training.accuracy(part0.upper, x_val, val.labels),
                "train accuracy, inference mode": training.accuracy(
                    part0.upper, x_train, train.labels
                ),
            },
            "same start": {},
        }
        for arm, (model, base, part) in self.classifiers.items():
            model.set_weights(start)
            for state, value in self.generator_states[arm]:
                state.assign(value)  # the same dropout masks whichever seeds ran before
            reset_optimizer(part.upper)
            row["same start"][arm] = bool(
                np.array_equal(training.predict_labels(part.upper, x_test), start_predictions)
            )
            start_training_mode = training_mode_accuracy(
                model, part, x_train, train.labels, seed, batch_size
            )
            before = batchnorm.statistics(base)
            set_seed(seed)
            history = frozen.fit_steps(
                part.upper, x_train, train.labels, p["finetune_steps"], batch_size=batch_size,
                seed=seed,
            )  # fmt: skip
            predictions = training.predict_labels(part.upper, x_test)
            row[arm] = {
                "test accuracy": float(np.mean(predictions == test.labels)),
                "val accuracy": training.accuracy(part.upper, x_val, val.labels),
                "train accuracy, inference mode": training.accuracy(
                    part.upper, x_train, train.labels
                ),
                "train accuracy, training mode": training_mode_accuracy(
                    model, part, x_train, train.labels, seed, batch_size
                ),
                "start: train accuracy, training mode": start_training_mode,
                "test predictions changed": float(np.mean(predictions != start_predictions)),
                "mean training loss": float(history.history["loss"][-1]),
                "statistics drift": batchnorm.drift(before, batchnorm.statistics(base)),
                "training/inference gap": batchnorm.training_mode_gap(part.pooled, x_val),
            }
        row["seconds"] = round(time.perf_counter() - started, 1)
        return row


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
    command = shlex.join(["python", "scripts/bn_study.py", *argv])
    made = studies.record(command, study.params, study.weights_description)
    results = studies.ResultsFile(args.out, made, key=("seed",))
    seeds = args.seeds or study.params["seeds"]
    for seed in seeds:
        if results.has(seed=seed):
            continue
        row = study.run(seed)
        results.save(row)
        scores = " ".join(f"{run}={row[run]['test accuracy']:.3f}" for run in RUNS)
        print(f"seed {seed}: test accuracy {scores} ({row['seconds']:.0f} s)", flush=True)
    print(f"{len(seeds)} seeds in {time.perf_counter() - start:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
