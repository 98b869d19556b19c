"""Pretrained vs from scratch (§4.1 AlexNet, §4.2 VGG): the seeds too long for the notebooks.

    python scripts/scratch_study.py vgg16      # every seed -> data/results/scratch_study_vgg16.json
    python scripts/scratch_study.py alexnet --seeds 0 --out /tmp/alexnet.json

A backbone with no ImageNet weights offline (VGG16 at 32 px, AlexNet at 67 px) on
Fashion-MNIST's classes 5-9 (20 images per class per seed: 16 to train, 4 to validate; 500
test images). The pretrained start is the backbone's ImageNet weights when they can be had,
else the base pretrained here on the source split (classes 0-4,
``ftutils.transfer.pretrained_weights``). For each seed three models: the frozen base with a
new head trained on its cached features ("head only"), that classifier with every layer then
trained ("pretrained"), and the same classifier from random weights with every layer trained
("scratch"), the last two scored at an equal budget of passes and at convergence (early
stopping on validation loss). The notebooks ``04_1_alexnet.ipynb`` and ``04_2_vgg.ipynb``
describe the design, plot the committed results and re-run the first seed live with
:class:`Study` (04_2 up to the budget only: VGG16's run to convergence is the longest of the
book), whose sanity checks compare it with the file.

Each seed's run starts by seeding every generator, so its result does not depend on the
seeds run before it. Results are written after every seed, with the command, parameters,
library versions, machine and dates; a re-run with the same parameters and weights skips
the seeds the file already holds.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent

#: Each notebook's parameters cell, in its defaults: what the committed studies ran.
PARAMS = {
    "alexnet": {  # 04_1_alexnet.ipynb
        "backbone": "alexnet",
        "image_size": 67,  # AlexNet's smallest input: conv1 and three max-pools leave 1x1
        "source_per_class": 300,  # the source split: no ImageNet weights exist for AlexNet
        "source_epochs": 6,
        "source_lr": 3e-4,
        "target_per_class": 20,  # per seed: 16 for training, 4 for validation
        "test_per_class": 100,  # scored at the budget and at convergence, never for a choice
        "head_epochs": 30,  # the new head on cached features of the frozen base
        "head_lr": 1e-2,
        "train_lr": 3e-4,  # every layer, pretrained or from scratch
        "budget_epochs": 3,  # the equal budget: passes of the whole network
        "max_epochs": 40,  # at convergence: early stopping on validation loss, at most this
        "patience": 5,  # passes without a lower validation loss before stopping
        "seeds": [0, 1, 2, 3, 4],
    },
    "vgg16": {  # 04_2_vgg.ipynb
        "backbone": "vgg16",
        "image_size": 32,  # VGG16's smallest input; five 2x2 pools leave a 1x1 map
        "source_per_class": 150,  # source-split pretraining, used only without ImageNet weights
        "source_epochs": 3,
        "source_lr": 1e-4,
        "target_per_class": 20,  # per seed: 16 for training, 4 for validation
        "test_per_class": 100,  # scored at the budget and at convergence, never used for a choice
        "head_epochs": 30,  # the new head on cached features of the frozen base
        "head_lr": 1e-3,
        "train_lr": 1e-4,  # every layer, pretrained or from scratch
        "budget_epochs": 3,  # the equal budget: passes of the whole network
        "max_epochs": 25,  # at convergence: early stopping on validation loss, at most this many
        "patience": 4,  # passes without a lower validation loss before stopping
        "seeds": [0, 1, 2, 3, 4],
    },
}

#: The test accuracies of one seed's row, and where its best pass and curves are kept.
SCORES = [
    "head only",
    "pretrained, budget",
    "scratch, budget",
    "pretrained, converged",
    "scratch, converged",
]
#: The scores a run stopped at the budget gives (``Study.run(seed, budget_only=True)``).
BUDGET_SCORES = SCORES[:3]
METHODS = ["pretrained", "scratch"]
#: Budgets (passes of the whole network) at which every run is still training: a run stops at
#: the earliest ``patience`` passes after its best one (pass 1 or later). Studies made with
#: the test accuracy after every pass (``"<method>, test_accuracy"``; AlexNet's) give them.
BUDGETS = [1, 3, 5]


def accuracy_after(row: dict, method: str, passes: int) -> float:
    """`method`'s test accuracy after `passes` passes of the whole network, in one seed's row."""
    return row[f"{method}, test_accuracy"][passes - 1]


def results_path(backbone: str) -> Path:
    """Where the committed study of ``backbone`` lives."""
    return PROJECT / "data" / "results" / f"scratch_study_{backbone}.json"


def _scored(budget_only: bool):
    from ftutils import training

    class Scored(training.BudgetThenConvergence):
        """:class:`ftutils.training.BudgetThenConvergence` that also keeps the test accuracy
        after every pass (``every_pass``), for the comparison at several budgets. With
        ``budget_only`` the run stops at the budget and the test set is scored there alone."""

        def on_train_begin(self, logs: dict | None = None) -> None:
            super().on_train_begin(logs)
            self.every_pass: list[float] = []

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            if not budget_only:
                self.every_pass.append(self.test_accuracy())
            super().on_epoch_end(epoch, logs)

        def on_train_end(self, logs: dict | None = None) -> None:
            if not budget_only:  # the best pass's weights, scored at convergence
                super().on_train_end(logs)

    return Scored


class Study:
    """The pretrained weights, the target data and one seed's three models (:meth:`run`)."""

    def __init__(self, params: dict):
        self.params = json.loads(json.dumps(params))

    def prepare(self, verbose: int = 2) -> Study:
        """The pretrained weights (pretraining on the source split if it must) and the data."""
        from ftutils import data, transfer

        p = self.params
        self.weights, self.weights_description = transfer.pretrained_weights(
            p["backbone"],
            p["image_size"],
            per_class=p["source_per_class"],
            epochs=p["source_epochs"],
            learning_rate=p["source_lr"],
            verbose=verbose,
        )
        self.target, target_test = data.load_fashion_mnist(list(transfer.TARGET_CLASSES))
        self.test = data.per_class(target_test, p["test_per_class"], seed=0)
        self.test_xy = data.resized_arrays(self.test, p["image_size"])
        return self

    def train_every_layer(self, model, train_xy, val_xy, seed: int, budget_only: bool):
        """Unfreeze the whole base and train under the budget-then-convergence schedule (up
        to the budget alone with ``budget_only``); the callback (its test scores, best pass)
        and history. The same fit as ``training.fit_budget_then_convergence``, scoring the
        test set after every pass too (predictions only: the training run is unchanged)."""
        from ftutils import backbones, models, training
        from ftutils.config import set_seed

        p = self.params
        backbones.unfreeze(models.base_of(model))  # no BatchNormalization to protect in either
        training.compile_classifier(model, "adam", p["train_lr"])
        scores = _scored(budget_only)(self.test_xy, p["budget_epochs"], p["patience"])
        set_seed(seed)
        history = model.fit(
            *train_xy,
            validation_data=val_xy,
            epochs=p["budget_epochs"] if budget_only else p["max_epochs"],
            batch_size=32,
            shuffle=True,
            callbacks=[scores],
            verbose=0,
        )
        return scores, history.history

    def run(self, seed: int, budget_only: bool = False) -> dict:
        """The three models on `seed`'s training images: test accuracies, best passes and
        each network's validation accuracy after every pass. ``budget_only``: both networks
        stop at the budget, and only :data:`BUDGET_SCORES` are returned (the same numbers as
        a full run's: each network's first passes do not depend on when it will stop)."""
        from ftutils import data, frozen, models, training
        from ftutils.config import set_seed

        p = self.params
        size, n_classes = p["image_size"], len(self.target.class_names)
        train, val = data.split(data.per_class(self.target, p["target_per_class"], seed), 0.2, seed)
        train_xy, val_xy = data.resized_arrays(train, size), data.resized_arrays(val, size)
        start = time.perf_counter()
        set_seed(seed)
        model = models.build_classifier(p["backbone"], n_classes, size, weights=self.weights)
        head, _ = frozen.train_head(
            frozen.extract_features(model, train, use_disk_cache=False),
            train.labels,
            frozen.extract_features(model, val, use_disk_cache=False),
            val.labels,
            n_classes,
            epochs=p["head_epochs"],
            learning_rate=p["head_lr"],
        )
        models.copy_head(head, model)
        head_only = training.accuracy(model, *self.test_xy, batch_size=250)
        tuned, tuned_history = self.train_every_layer(model, train_xy, val_xy, seed, budget_only)
        set_seed(seed)
        scratch = models.build_classifier(p["backbone"], n_classes, size, weights=None)
        fresh, fresh_history = self.train_every_layer(scratch, train_xy, val_xy, seed, budget_only)
        budget = {
            "head only": head_only,
            "pretrained, budget": tuned.at_budget,
            "scratch, budget": fresh.at_budget,
        }
        if budget_only:
            return {"seed": seed, **budget}
        row = {
            "seed": seed,
            **budget,
            "pretrained, converged": tuned.at_convergence,
            "scratch, converged": fresh.at_convergence,
            "pretrained, best pass": tuned.best_epoch,
            "scratch, best pass": fresh.best_epoch,
            "pretrained, val_accuracy": [float(a) for a in tuned_history["val_accuracy"]],
            "scratch, val_accuracy": [float(a) for a in fresh_history["val_accuracy"]],
            "pretrained, test_accuracy": tuned.every_pass,
            "scratch, test_accuracy": fresh.every_pass,
            "seconds": round(time.perf_counter() - start, 1),
        }
        return row


def run_to_file(out: Path, study: Study, seeds: list[int], command: str) -> dict:
    """Run `seeds` with the prepared `study`, writing `out` after each; its content. A file
    made with the same parameters and weights is resumed: its seeds are not run again."""
    from ftutils import studies

    made = studies.record(command, study.params, study.weights_description)
    results = studies.ResultsFile(out, made, key=("seed",))
    for seed in seeds:
        if results.has(seed=seed):
            continue
        row = study.run(seed)
        results.save(row)
        scores = " ".join(f"{name}={row[name]:.3f}" for name in SCORES)
        print(f"seed {seed}: {scores} ({row['seconds']:.0f} s)", flush=True)
    return results.content


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backbone", choices=sorted(PARAMS))
    parser.add_argument(
        "--out", type=Path, help="default: data/results/scratch_study_<backbone>.json"
    )
    parser.add_argument("--seeds", type=int, nargs="+", help="default: the study's seeds")
    args = parser.parse_args(argv)

    import ftutils

    ftutils.setup(seed=0, verbose=False)
    start = time.perf_counter()
    params = PARAMS[args.backbone]
    study = Study(params).prepare()
    out, seeds = args.out or results_path(args.backbone), args.seeds or params["seeds"]
    command = shlex.join(["python", "scripts/scratch_study.py", *argv])
    run_to_file(out, study, seeds, command)
    print(f"{len(seeds)} seeds in {time.perf_counter() - start:.0f} s -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
