"""Chapter 1's three steps over several seeds (§1): the seeds too long for the notebook.

    python scripts/intro_study.py                 # every run -> data/results/intro_study.json
    python scripts/intro_study.py --seeds 0 --out /tmp/intro.json

Fashion-MNIST at 128 px, 100 labelled images per class (a fifth of them for validation), the
same 200 test images per class for every seed. Each seed draws its own labelled subset, its
own train/validation split and its own initial weights, then runs the three steps of
``01_introduction.ipynb``: feature extraction (a new head on the frozen ImageNet MobileNetV2),
fine-tuning of the top blocks (BatchNormalization frozen, lr 1e-4), and the book's default
recipe (``ftutils.recipe.feature_ensemble``). The notebook re-runs seed 0 live and compares it
with the file.

Each run starts by seeding every generator, so its result does not depend on the runs before
it. Results are written after every run, with the command, parameters, library versions,
machine and dates; a re-run with the same parameters and weights skips the seeds the file
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
RESULTS = PROJECT / "data" / "results" / "intro_study.json"

#: The notebook's parameters cell, in its defaults: what the committed study ran.
PARAMS = {
    "dataset": "fashion_mnist",
    "backbone": "mobilenet_v2",
    "image_size": 128,
    "images_per_class": 100,  # labelled target images per class (train + validation)
    "val_fraction": 0.2,
    "test_per_class": 200,  # the same test images for every seed
    "head_epochs": 20,
    "finetune_epochs": 10,
    "finetune_lr": 1e-4,
    "unfreeze_from": "block_13_expand",
    "ensemble_backbones": ["mobilenet_v2", "mobilenet"],
    "ensemble_heads": 5,
    "seeds": [0, 1, 2, 3, 4],
}
KEY = ("seed",)
#: The methods each run measures, in the notebook's order.
METHODS = ("feature extraction", "fine-tuning", "default recipe")


class Study:
    """The dataset and one seed's three steps (:meth:`run`)."""

    def __init__(self, params: dict | None = None):
        self.params = json.loads(json.dumps(PARAMS if params is None else params))

    def prepare(self) -> Study:
        """Load the dataset; the test images, the same for every seed."""
        from ftutils import backbones, data

        p = self.params
        self.train_all, test_all = data.load_dataset(p["dataset"], p["image_size"])
        self.test = data.per_class(test_all, p["test_per_class"], seed=0)
        weights = backbones.imagenet_weights_path(p["backbone"]).name
        self.weights_description = (
            f"ImageNet {p['backbone']} ({weights}) and {', '.join(p['ensemble_backbones'])} "
            f"for the default recipe, loaded into {p['image_size']}-px bases"
        )
        return self

    def split(self, seed: int):
        """The seed's labelled images, split into training and validation images."""
        from ftutils import data

        p = self.params
        labelled = data.per_class(self.train_all, p["images_per_class"], seed=seed)
        return data.split(labelled, p["val_fraction"], seed=seed)

    def run(self, seed: int) -> dict:
        """Feature extraction, then fine-tuning of the same model, then the default recipe:
        each one's validation and test accuracy and seconds."""
        from ftutils import models, recipe, training
        from ftutils.config import set_seed

        p = self.params
        train, val = self.split(seed)
        row = {"seed": seed}

        def measure(name, predictor, seconds):
            row[name] = {
                "val": training.accuracy(predictor, val),
                "test": training.accuracy(predictor, self.test),
                "seconds": round(seconds, 1),
            }

        set_seed(seed)
        model = models.build_classifier(p["backbone"], train.n_classes, p["image_size"])
        start = time.perf_counter()
        record = recipe.fine_tune(
            model, train, val, head_epochs=p["head_epochs"], finetune_epochs=0, seed=seed
        )
        measure("feature extraction", model, time.perf_counter() - start)
        start = time.perf_counter()
        recipe.fine_tune(
            model, train, val, head_epochs=0, finetune_epochs=p["finetune_epochs"],
            finetune_lr=p["finetune_lr"], unfreeze_from=p["unfreeze_from"], seed=seed,
            record=record,
        )  # fmt: skip
        measure("fine-tuning", model, time.perf_counter() - start)
        start = time.perf_counter()
        ensemble, _ = recipe.feature_ensemble(
            train, val, p["ensemble_backbones"], p["image_size"], heads=p["ensemble_heads"],
            seed=seed,
        )  # fmt: skip
        measure("default recipe", ensemble, time.perf_counter() - start)
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
    command = shlex.join(["python", "scripts/intro_study.py", *argv])
    made = studies.record(command, study.params, study.weights_description)
    results = studies.ResultsFile(args.out, made, key=KEY)
    seeds = study.params["seeds"] if args.seeds is None else args.seeds
    for i, seed in enumerate(seeds, start=1):
        if results.has(seed=seed):
            continue
        row = study.run(seed)
        results.save(row)
        scores = " ".join(f"{m}: test {row[m]['test']:.3f}" for m in METHODS)
        seconds = sum(row[m]["seconds"] for m in METHODS)
        print(f"[{i}/{len(seeds)}] seed={seed}: {scores} ({seconds:.0f} s)", flush=True)
    print(f"{len(seeds)} runs in {time.perf_counter() - start:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
