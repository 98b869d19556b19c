"""Fine-tuning vs transfer learning with little data (§2.2): the sweep too long for the notebook.

    python scripts/transfer_study.py            # the full study -> data/results/transfer_study.json
    python scripts/transfer_study.py --more     # 10 seeds at 5/class -> transfer_study_more.json
    python scripts/transfer_study.py --out /tmp/x.json --per-class 5 --seeds 0 \\
        --methods features "careful fine-tune"

MobileNetV2 (ImageNet weights) at 48 px on Fashion-MNIST's classes 5-9, every method on the
same budget of 60 training steps of 25 images (Adam): a network from scratch, feature
extraction, a careful fine-tune (the head first, then the top blocks at a low rate with
BatchNormalization frozen) and a naive one (random head, rate 1e-3, BatchNormalization
trainable), at 5, 20 and 100 training images per class and seeds 0-2; then the careful
recipe with one of the naive changes at a time, at 5 images per class. With ``--more``
(``data/results/transfer_study_more.json``): feature extraction and the two fine-tunes at 5
images per class on seeds 0-9, where their differences are near the seeds' spread, each also
scored on a validation set no larger than its training set (the one a practitioner with that
few labels could afford). The notebook
``02_2_finetuning_vs_transfer.ipynb`` describes the methods, plots the results and re-runs
one configuration live with :class:`Study`; ``tests/test_transfer_study.py`` re-runs a
small one and compares it with the committed numbers.

Every network is built and compiled once and reset before each run
(``ftutils.experiments.snapshot`` / ``restore``: weights, BatchNormalization statistics,
dropout RNG state, optimizer state), and each run starts by seeding every generator, so a
run's result does not depend on which runs came before it. The runs go in the notebook's
old sweep order all the same: for each size and seed the four methods, then for each seed
the three one-change variants (:func:`plan`).

Results are written after every run (a re-run with the same parameters skips what the file
already holds), with the command, parameters, library versions, machine and dates.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parent.parent
RESULTS = PROJECT / "data" / "results" / "transfer_study.json"

#: The notebook's parameters cell, in its defaults: what the committed study ran.
PARAMS = {
    "backbone": "mobilenet_v2",  # ImageNet weights from keras.applications (offline cache)
    "image_size": 48,
    "cut": "block_13_expand",  # fine-tunes train the top four blocks, Conv_1 and the head
    "classes": [5, 6, 7, 8, 9],  # Fashion-MNIST's target classes (ftutils.transfer)
    "per_class": [5, 20, 100],  # training images per class
    "ablation_per_class": 5,  # where the naive fine-tune is taken apart
    "seeds": [0, 1, 2],  # each seed: another training subset, initialisation and shuffling
    "val_per_class": 20,  # validation images, held out of the training pool
    "test_per_class": 100,  # a fixed test subset, never used for a choice
    "batch_size": 25,
    "steps": 60,  # training steps of every method at every size: the equal budget
    "head_steps": 30,  # the two-phase recipes spend this many of the steps on the head first
    "head_lr": 3e-3,  # Adam, a new head on stored features
    "finetune_lr": 3e-5,  # Adam, the careful fine-tune
    "full_lr": 1e-3,  # Adam's default: training from scratch, and the naive fine-tune
}

MAIN_METHODS = ["scratch", "features", "careful fine-tune", "naive fine-tune"]
#: The careful recipe with one of the naive fine-tune's three changes.
ONE_CHANGE = ["careful + BN trainable", "careful + lr 1e-3", "careful + random head"]
METHODS = [*MAIN_METHODS, *ONE_CHANGE]
#: The little-data comparison on more seeds (``--more``, its own file): feature extraction and
#: both fine-tunes at 5 images per class on seeds 0-9 (0-2 again: they reproduce RESULTS).
MORE_METHODS = ["features", "careful fine-tune", "naive fine-tune"]
MORE = {"per_class": [5], "seeds": list(range(10)), "methods": MORE_METHODS}
MORE_RESULTS = PROJECT / "data" / "results" / "transfer_study_more.json"
#: What one run reports (None where it does not apply: only the runs that train
#: BatchNormalization have a test accuracy before its statistics are recomputed).
RESULT_KEYS = ["accuracy", "val_accuracy", "test_before_statistics", "train_seconds"]
#: Also in every run of the ``--more`` file (None at ``val_per_class`` images per class or
#: more): the accuracy on a validation set as large as the training set (:meth:`Study.small_val`).
MORE_RESULT_KEYS = [*RESULT_KEYS, "small_val_accuracy"]


def recompute_statistics(upper, x) -> None:
    """Set the trainable BatchNormalization layers' moving statistics in `upper` (a cut's upper
    part) to those of `x`, its input for the training images, in one batch."""
    from ftutils import batchnorm

    layers = [bn for bn in batchnorm.layers_of(upper) if bn.trainable]
    saved = [bn.momentum for bn in layers]
    try:
        for bn in layers:
            bn.momentum = 0.0  # moving statistics <- this batch's statistics
        upper(x, training=True)
    finally:
        for bn, momentum in zip(layers, saved, strict=True):
            bn.momentum = momentum


class Study:
    """The data, the networks (each compiled once, with its snapshot) and the seven methods.

    Build it in the order below (:meth:`build` does it all; the notebook calls the steps one
    cell at a time): the data, the ImageNet classifier cut at ``params["cut"]``, the stored
    validation and test activations, the two fine-tune networks, the scratch network and
    the head. Then :meth:`run` trains one method on one training subset.
    """

    def __init__(self, params: dict | None = None):
        self.params = json.loads(json.dumps(PARAMS if params is None else params))
        self.random_init: dict[int, list] = {}  # seed -> the scratch network's random weights
        self.random_head: dict[int, list] = {}  # seed -> a random head's weights

    def build(self) -> Study:
        self.load_data()
        self.build_imagenet()
        self.extract()
        self.build_finetunes()
        self.build_scratch_and_head()
        return self

    def load_data(self) -> None:
        """The target pool to draw training subsets from, and fixed validation and test sets."""
        from ftutils import data

        p = self.params
        self.target_train, self.target_test = data.load_fashion_mnist(p["classes"])
        self.pool, held_out = data.split(self.target_train, 0.1, seed=0)
        self.val = data.per_class(held_out, p["val_per_class"], seed=0)
        # the held-out images not in the validation set: where the small validation sets come from
        in_val = data.shared_images(self.val, held_out)
        self.held_out_rest = held_out.take(np.setdiff1d(np.arange(len(held_out)), in_val))
        self.test = data.per_class(self.target_test, p["test_per_class"], seed=0)
        self.n_classes = len(self.target_train.class_names)

    def build_imagenet(self) -> None:
        """The classifier with ImageNet weights, cut: ``split.lower`` frozen, ``split.upper``."""
        from ftutils import frozen, models
        from ftutils.config import set_seed

        p = self.params
        # Building a layer draws its seeds (a dropout layer's RNG state, the initialisers) from
        # Python's generator: the networks below are built in this order from seed 0, as
        # after ftutils.setup(seed=0), so every process builds them alike.
        set_seed(0)
        self.imagenet = models.build_classifier(
            p["backbone"], self.n_classes, p["image_size"], weights="imagenet"
        )
        self.split = frozen.cut(self.imagenet, p["cut"])

    def extract(self) -> None:
        """The validation and test images through the frozen part once (and pooled)."""
        from ftutils import frozen

        self.acts_val, self.acts_test = (
            frozen.activations(self.split.lower, d) for d in (self.val, self.test)
        )
        self.pooled_val, self.pooled_test = (
            np.asarray(self.split.pooled(a)) for a in (self.acts_val, self.acts_test)
        )

    def build_finetunes(self) -> None:
        """The top of the network compiled twice: BatchNormalization frozen (careful) and
        trainable (naive), each with a snapshot of its fresh state to reset it to."""
        from ftutils import backbones, experiments, frozen, models, training

        p = self.params
        cut = p["cut"]
        self.trainable_layers = backbones.unfreeze(
            models.base_of(self.imagenet), from_layer=cut
        )  # BN frozen
        training.compile_classifier(self.split.upper, "adam", p["finetune_lr"])
        self.careful_start = experiments.snapshot(self.split.upper)  # ImageNet, fresh optimizer

        self.naive = models.build_classifier(
            p["backbone"], self.n_classes, p["image_size"], weights="imagenet"
        )
        naive_base = models.base_of(self.naive)
        backbones.unfreeze(naive_base, from_layer=cut)
        cut_index = [layer.name for layer in naive_base.layers].index(cut)
        for layer in naive_base.layers[cut_index:]:
            layer.trainable = True  # BatchNormalization above the cut trains too
        self.naive_split = frozen.cut(self.naive, cut)
        training.compile_classifier(self.naive_split.upper, "adam", p["full_lr"])
        self.naive_start = experiments.snapshot(self.naive_split.upper)

    def build_scratch_and_head(self) -> None:
        """The network from random weights (cut at its first layer: all of it trains) and the
        head trained on stored features, each compiled once with its snapshot."""
        from ftutils import experiments, frozen, models, training

        p = self.params
        self.scratch = models.build_classifier(
            p["backbone"], self.n_classes, p["image_size"], weights=None
        )
        models.base_of(self.scratch).trainable = True  # every layer, BatchNormalization included
        self.scratch_split = frozen.cut(self.scratch, "Conv1")  # below the cut: input scaling
        training.compile_classifier(self.scratch_split.upper, "adam", p["full_lr"])
        self.scratch_start = experiments.snapshot(self.scratch_split.upper)
        self.scaled_val, self.scaled_test = (
            frozen.activations(self.scratch_split.lower, d) for d in (self.val, self.test)
        )

        self.features = self.pooled_val.shape[1]
        self.head = models.build_head(self.features, self.n_classes)
        training.compile_classifier(self.head, "adam", p["head_lr"])
        self.head_start = experiments.snapshot(self.head)

    def random_start(self, seed: int, scratch: bool) -> None:
        """The seed's random weights of a head and (with `scratch`) of the scratch network,
        each drawn once, right after seeding: the same whatever was built or ran before."""
        from ftutils import models
        from ftutils.config import set_seed

        p = self.params
        if scratch and seed not in self.random_init:
            set_seed(seed)
            self.random_init[seed] = models.build_classifier(
                p["backbone"], self.n_classes, p["image_size"], weights=None
            ).get_weights()
        if seed not in self.random_head:
            set_seed(seed)
            head = models.build_head(self.features, self.n_classes)
            self.random_head[seed] = head.get_layer("classifier").get_weights()

    # The methods: each trains on `subset` and returns (validation accuracy, test accuracy,
    # test accuracy before the BatchNormalization statistics were recomputed, or None).

    def scores(self, model, x_val, x_test):
        from ftutils import training

        return training.accuracy(model, x_val, self.val.labels), training.accuracy(
            model, x_test, self.test.labels
        )

    def small_val(self, per_class: int, seed: int):
        """The validation set a practitioner with `per_class` labelled images per class could
        afford: as many again, per class, drawn for `seed` from the held-out images outside
        the validation set (disjoint from the training pool, the validation and test sets)."""
        from ftutils import data

        return data.per_class(self.held_out_rest, per_class, seed=10_000 + seed)

    def small_val_accuracy(self, method: str, per_class: int, seed: int) -> float:
        """The accuracy of the network `method` just trained on :meth:`small_val`."""
        from ftutils import frozen, training

        small = self.small_val(per_class, seed)
        if method == "scratch":
            model, lower, pooled = self.scratch_split.upper, self.scratch_split.lower, False
        elif method == "features":
            model, lower, pooled = self.head, self.split.lower, True
        elif self.method_settings()[method]["bn_trainable"]:
            model, lower, pooled = self.naive_split.upper, self.split.lower, False
        else:
            model, lower, pooled = self.split.upper, self.split.lower, False
        x = frozen.activations(lower, small)
        if pooled:
            x = np.asarray(self.split.pooled(x))
        return training.accuracy(model, x, small.labels)

    def run_scratch(self, subset, seed):
        from ftutils import experiments, frozen

        p = self.params
        experiments.restore(self.scratch_split.upper, self.scratch_start)
        self.scratch.set_weights(self.random_init[seed])
        x = frozen.activations(self.scratch_split.lower, subset)
        frozen.fit_steps(self.scratch_split.upper, x, subset.labels, p["steps"],
                         p["batch_size"], seed)  # fmt: skip
        _, test_as_left = self.scores(self.scratch_split.upper, self.scaled_val, self.scaled_test)
        recompute_statistics(self.scratch_split.upper, x)
        return (*self.scores(self.scratch_split.upper, self.scaled_val, self.scaled_test),
                test_as_left)  # fmt: skip

    def run_head(self, subset, seed, steps):
        """A new head on the ImageNet features of `subset`, trained for `steps` steps."""
        from ftutils import experiments, frozen

        split, head = self.split, self.head
        experiments.restore(split.upper, self.careful_start)  # pooled features of ImageNet weights
        acts = frozen.activations(split.lower, subset)
        experiments.restore(head, self.head_start)
        head.get_layer("classifier").set_weights(self.random_head[seed])
        frozen.fit_steps(head, np.asarray(split.pooled(acts)), subset.labels, steps,
                         self.params["batch_size"], seed)  # fmt: skip
        return acts

    def run_features(self, subset, seed):
        self.run_head(subset, seed, self.params["steps"])
        return (*self.scores(self.head, self.pooled_val, self.pooled_test), None)

    def run_finetune(self, subset, seed, bn_trainable, learning_rate, head_first):
        """Fine-tune the top blocks and head for `steps` steps in all (with `head_first`, the
        head alone for `head_steps` of them first, on the features)."""
        from ftutils import experiments, frozen, models

        p = self.params
        steps = p["steps"]
        if head_first:
            acts = self.run_head(subset, seed, p["head_steps"])
            steps -= p["head_steps"]
        else:
            acts = frozen.activations(self.split.lower, subset)
        network, upper, start = (
            (self.naive, self.naive_split.upper, self.naive_start)
            if bn_trainable
            else (self.imagenet, self.split.upper, self.careful_start)
        )
        experiments.restore(upper, start)
        upper.optimizer.learning_rate.assign(learning_rate)
        if head_first:
            models.copy_head(self.head, network)
        else:
            network.get_layer("classifier").set_weights(self.random_head[seed])
        frozen.fit_steps(upper, acts, subset.labels, steps, p["batch_size"], seed)
        result = self.scores(upper, self.acts_val, self.acts_test)
        if not bn_trainable:
            return (*result, None)
        recompute_statistics(upper, acts)
        return (*self.scores(upper, self.acts_val, self.acts_test), result[1])

    def method_settings(self) -> dict:
        """The fine-tunes' settings, by method name."""
        p = self.params
        careful = {"bn_trainable": False, "learning_rate": p["finetune_lr"], "head_first": True}
        naive = {"bn_trainable": True, "learning_rate": p["full_lr"], "head_first": False}
        return {
            "careful fine-tune": careful,
            "naive fine-tune": naive,
            "careful + BN trainable": {**careful, "bn_trainable": True},
            "careful + lr 1e-3": {**careful, "learning_rate": p["full_lr"]},
            "careful + random head": {**careful, "head_first": False},
        }

    def method(self, name: str) -> Callable:
        """The method called `name` (one of :data:`METHODS`), as f(subset, seed)."""
        settings = self.method_settings()
        if name == "scratch":
            return self.run_scratch
        if name == "features":
            return self.run_features
        if name not in settings:
            raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
        return lambda subset, seed: self.run_finetune(subset, seed, **settings[name])

    def run(self, method: str, per_class: int, seed: int) -> dict:
        """Train `method` on `per_class` images per class drawn with `seed`; its results."""
        from ftutils import data
        from ftutils.config import set_seed

        train = self.method(method)
        self.random_start(seed, scratch=method == "scratch")
        set_seed(seed)  # a run gives the same result whatever ran before it
        subset = data.per_class(self.pool, per_class, seed)
        start = time.perf_counter()
        val_accuracy, test_accuracy, test_as_left = train(subset, seed)
        seconds = time.perf_counter() - start
        small_val_accuracy = (
            self.small_val_accuracy(method, per_class, seed)
            if per_class < self.params["val_per_class"]
            else None
        )
        return {
            "accuracy": test_accuracy,
            "val_accuracy": val_accuracy,
            "small_val_accuracy": small_val_accuracy,
            "test_before_statistics": test_as_left,
            "train_seconds": seconds,
        }


def plan(params: dict, per_class=None, seeds=None, methods=None) -> list[tuple[str, int, int]]:
    """(method, per_class, seed) of every run, in the order they run; the optional lists keep
    only the runs with those sizes, seeds and methods."""
    runs = [(method, k, seed) for k in params["per_class"] for seed in params["seeds"]
            for method in MAIN_METHODS]  # fmt: skip
    runs += [(method, params["ablation_per_class"], seed) for seed in params["seeds"]
             for method in ONE_CHANGE]  # fmt: skip
    return [
        (method, k, seed)
        for method, k, seed in runs
        if (per_class is None or k in per_class)
        and (seeds is None or seed in seeds)
        and (methods is None or method in methods)
    ]


def plan_more(more: dict, seeds=None) -> list[tuple[str, int, int]]:
    """(method, per_class, seed) of every run of the ``--more`` file, in order (optionally
    only those `seeds`)."""
    return [(method, k, seed) for k in more["per_class"] for seed in more["seeds"]
            for method in more["methods"] if seeds is None or seed in seeds]  # fmt: skip


def row_text(row: dict) -> str:
    """One run as a line: its settings, then its results to 3 decimals."""
    values = " ".join(f"{k}={row[k]:.3f}" for k in MORE_RESULT_KEYS if row.get(k) is not None)
    return f"per_class={row['per_class']} seed={row['seed']} method={row['method']} -> {values}"


def run_study(study: Study, runs: list[tuple[str, int, int]], done: set, save) -> None:
    """Run every (method, per_class, seed) of `runs` that `done` lacks; `save` each row."""
    for i, (method, per_class, seed) in enumerate(runs, start=1):
        if (method, per_class, seed) in done:
            continue
        row = {"method": method, "per_class": per_class, "seed": seed,
               **study.run(method, per_class, seed)}  # fmt: skip
        save(row)
        print(f"[{i}/{len(runs)}] {row_text(row)}", flush=True)


PLAN_ORDER = ("one process, in the order of plan(): for each size and seed the four methods, "
              "then for each seed the three one-change variants")  # fmt: skip


def provenance(
    command: str, params: dict, machine_note: str | None = None, run_order: str = PLAN_ORDER
) -> dict:
    from ftutils import backbones, studies

    weights = backbones.imagenet_weights_path(params["backbone"]).name
    return {
        **studies.record(
            command,
            params,
            f"ImageNet {params['backbone']} ({weights}, loaded into a "
            f"{params['image_size']}-px base)",
            machine_note or studies.SHARED_CPU,
        ),
        "run_order": run_order,
    }


def run_to_file(
    out: Path,
    params: dict,
    runs: list,
    command: str,
    study: Study | None = None,
    machine_note: str | None = None,
    run_order: str = PLAN_ORDER,
) -> dict:
    """Run `runs` (from :func:`plan`), writing the file `out` after each one; its content.

    A file that ran with the same parameters is resumed: its runs are kept and not run
    again. `study`: a built :class:`Study` of these parameters to run with (else one is
    built when there is something to run).
    """
    params = json.loads(json.dumps(params))
    result = {"provenance": provenance(command, params, machine_note, run_order), "runs": []}
    if out.is_file():
        previous = json.loads(out.read_text())
        if previous["provenance"]["parameters"] == params:  # resume
            result["runs"] = previous["runs"]
            result["provenance"]["started"] = previous["provenance"]["started"]
    done = {(r["method"], r["per_class"], r["seed"]) for r in result["runs"]}
    if result["runs"] and all(run in done for run in runs):
        return previous  # nothing to run: the file as it was made

    def save(row: dict) -> None:
        from ftutils import studies

        result["runs"].append(row)
        result["provenance"]["finished"] = studies.now()
        studies.write_json(out, result)

    study = study if study is not None else Study(params).build()
    run_study(study, runs, done, save)
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--per-class", type=int, nargs="+", help="only these training-set sizes")
    parser.add_argument("--seeds", type=int, nargs="+", help="only these seeds")
    parser.add_argument("--methods", nargs="+", choices=METHODS, help="only these methods")
    parser.add_argument(
        "--more", action="store_true", help=f"the runs of MORE, by default to {MORE_RESULTS.name}"
    )
    args = parser.parse_args(argv)

    import ftutils

    ftutils.setup(seed=0, verbose=False)
    command = shlex.join(["python", "scripts/transfer_study.py", *argv])
    start = time.perf_counter()
    if args.more:
        runs = plan_more(MORE, args.seeds)
        out = MORE_RESULTS if args.out == RESULTS else args.out
        order = "one process, in the order of plan_more(): for each seed the three methods"
        run_to_file(out, {**PARAMS, "more": MORE}, runs, command, run_order=order)
        print(f"{len(runs)} runs in {time.perf_counter() - start:.0f} s -> {out}", flush=True)
        return 0
    runs = plan(PARAMS, args.per_class, args.seeds, args.methods)
    if not runs:
        parser.error("no run of the study has these sizes, seeds and methods")
    run_to_file(args.out, PARAMS, runs, command)
    print(f"{len(runs)} runs in {time.perf_counter() - start:.0f} s -> {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
