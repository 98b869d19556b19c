"""VGG16 pretrained vs from scratch (§4.2): the seeds too long for the notebook.

    python scripts/vgg_study.py                 # every seed -> data/results/vgg_study.json
    python scripts/vgg_study.py --seeds 0 --out /tmp/vgg.json

VGG16 at 32 px on Fashion-MNIST's classes 5-9 (20 images per class per seed: 16 to train, 4
to validate; 500 test images). The pretrained start is VGG16's ImageNet weights when they
can be had, else the base pretrained here on the source split (classes 0-4,
``ftutils.transfer.pretrained_weights``). For each seed three models: the frozen base with a
new head trained on its cached features ("head only"), that classifier with every layer then
trained ("pretrained"), and the same classifier from random weights with every layer trained
("scratch"), the last two scored at an equal budget of passes and at convergence (early
stopping on validation loss). The notebook ``04_2_vgg.ipynb`` describes the design, plots
the committed results and re-runs the first seed live with :class:`Study`, whose sanity
checks compare it with the file.

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
RESULTS = PROJECT / "data" / "results" / "vgg_study.json"

#: The notebook's parameters cell, in its defaults: what the committed study ran.
PARAMS = {
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
    "seeds": [0, 1, 2],
}

#: The test accuracies of one seed's row, and where its best pass and curves are kept.
SCORES = [
    "head only",
    "pretrained, budget",
    "scratch, budget",
    "pretrained, converged",
    "scratch, converged",
]
METHODS = ["pretrained", "scratch"]


class Study:
    """The pretrained weights, the target data and one seed's three models (:meth:`run`)."""

    def __init__(self, params: dict | None = None):
        self.params = json.loads(json.dumps(PARAMS if params is None else params))

    def prepare(self, verbose: int = 2) -> Study:
        """The pretrained weights (pretraining on the source split if it must) and the data."""
        from ftutils import data, transfer

        p = self.params
        self.weights, self.weights_description = transfer.pretrained_weights(
            "vgg16",
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

    def train_every_layer(self, model, train_xy, val_xy, seed: int):
        """Unfreeze the whole base and train under the budget-then-convergence schedule;
        the callback (its two test scores and best pass) and the history."""
        from ftutils import backbones, models, training

        p = self.params
        backbones.unfreeze(models.base_of(model))  # VGG16 has no BatchNormalization to protect
        return training.fit_budget_then_convergence(
            model,
            train_xy,
            val_xy,
            self.test_xy,
            learning_rate=p["train_lr"],
            budget=p["budget_epochs"],
            patience=p["patience"],
            max_epochs=p["max_epochs"],
            seed=seed,
        )

    def run(self, seed: int) -> dict:
        """The three models on `seed`'s training images: test accuracies, best passes and
        each network's validation accuracy after every pass."""
        from ftutils import data, frozen, models, training
        from ftutils.config import set_seed

        p = self.params
        size, n_classes = p["image_size"], len(self.target.class_names)
        train, val = data.split(data.per_class(self.target, p["target_per_class"], seed), 0.2, seed)
        train_xy, val_xy = data.resized_arrays(train, size), data.resized_arrays(val, size)
        start = time.perf_counter()
        set_seed(seed)
        model = models.build_classifier("vgg16", n_classes, size, weights=self.weights)
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
        tuned, tuned_history = self.train_every_layer(model, train_xy, val_xy, seed)
        set_seed(seed)
        scratch = models.build_classifier("vgg16", n_classes, size, weights=None)
        fresh, scratch_history = self.train_every_layer(scratch, train_xy, val_xy, seed)
        return {
            "seed": seed,
            "head only": head_only,
            "pretrained, budget": tuned.at_budget,
            "scratch, budget": fresh.at_budget,
            "pretrained, converged": tuned.at_convergence,
            "scratch, converged": fresh.at_convergence,
            "pretrained, best pass": tuned.best_epoch,
            "scratch, best pass": fresh.best_epoch,
            "pretrained, val_accuracy": [float(a) for a in tuned_history["val_accuracy"]],
            "scratch, val_accuracy": [float(a) for a in scratch_history["val_accuracy"]],
            "seconds": round(time.perf_counter() - start, 1),
        }


def run_to_file(out: Path, study: Study, seeds: list[int], command: str) -> dict:
    """Run `seeds` with the prepared `study`, writing `out` after each; its content. A file
    made with the same parameters and weights is resumed: its seeds are not run again."""
    from ftutils import studies

    made = studies.record(command, study.params, study.weights_description)
    result = {"provenance": made, "runs": []}
    if out.is_file():
        previous = json.loads(out.read_text())
        same = ("parameters", "weights")
        if all(previous["provenance"][k] == made[k] for k in same):
            result["runs"] = previous["runs"]
            made["started"] = previous["provenance"]["started"]
    done = {row["seed"] for row in result["runs"]}
    for seed in seeds:
        if seed in done:
            continue
        row = study.run(seed)
        result["runs"].append(row)
        made["finished"] = studies.now()
        studies.write_json(out, result)
        scores = " ".join(f"{name}={row[name]:.3f}" for name in SCORES)
        print(f"seed {seed}: {scores} ({row['seconds']:.0f} s)", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--seeds", type=int, nargs="+", default=PARAMS["seeds"])
    args = parser.parse_args(argv)

    import ftutils

    ftutils.setup(seed=0, verbose=False)
    start = time.perf_counter()
    study = Study().prepare()
    command = shlex.join(["python", "scripts/vgg_study.py", *argv])
    run_to_file(args.out, study, args.seeds, command)
    print(f"{len(args.seeds)} seeds in {time.perf_counter() - start:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
