"""How deep to fine-tune, and with what (§4.4): the experiments too large for the notebook.

    python scripts/depth_study.py                  # the full study -> data/results/depth_study.json
    python scripts/depth_study.py --out /tmp/x.json --per-class 20 --seeds 0 --only depth

MobileNetV2 (ImageNet weights) on Fashion-MNIST at 96 px. For every training-set size and
seed, the head is trained first with the base frozen (phase 1 of ``ftutils.recipe.fine_tune``,
early stopping on validation loss), then, from that same head, phase 2 unfreezes the base
from a given layer (BatchNormalization frozen) and trains with early stopping on validation
loss. Three experiments share these runs:

* ``depth``: head only vs the top block vs the top four blocks, at several data sizes;
* ``lpft``: the two-phase recipe (linear probe, then fine-tune: LP-FT) vs fine-tuning with a
  random head (FT), the same layers, optimizer, learning rate and stopping rule; tested on the
  test images and on two shifted copies of them (inverted contrast, halved contrast);
* ``optimizer``: SGD, momentum, AdaGrad, RMSProp and Adam for phase 2 (top block unfrozen),
  each at the learning rate of its grid with the lowest validation loss on seed 0.

Results are written after every run (a re-run skips what the file already holds), with the
command, parameters, library versions, machine and date. The notebook
``04_4_finetuning_workflow.ipynb`` plots them; ``tests/test_depth_study.py`` re-runs one
small configuration and compares it with the committed numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parent.parent
RESULTS = PROJECT / "data" / "results" / "depth_study.json"

PARAMS = {
    "backbone": "mobilenet_v2",
    "image_size": 96,
    "per_class": [5, 20, 100],  # labelled training images per class
    "val_per_class": 50,  # validation images per class (from the training split): every choice
    "test_per_class": 100,  # test images per class, from Fashion-MNIST's test set
    "seeds": [0, 1, 2],  # the training and validation subsets, the head's start, the shuffling
    "head_epochs": 60,
    "head_lr": 1e-3,
    "head_patience": 5,
    "finetune_epochs": 30,
    "finetune_lr": 1e-4,
    "finetune_patience": 4,
    "optimizer": "adam",
    # first trainable base layer of each depth (None: the head only)
    "depths": {
        "head only": None,
        "top block": "block_16_expand",
        "top 4 blocks": "block_13_expand",
    },
    "lpft_per_class": 100,
    "lpft_depth": "top block",
    "optimizer_per_class": [20],  # sizes to compare the optimizers at
    "optimizer_depth": "top block",
    # phase-2 learning rates tried per optimizer (seed 0 chooses on validation loss)
    "optimizer_lrs": {
        "sgd": [1e-4, 1e-3, 1e-2],
        "momentum": [1e-5, 1e-4, 1e-3],
        "adagrad": [1e-4, 1e-3, 1e-2],
        "rmsprop": [1e-6, 1e-5, 1e-4],
        "adam": [1e-6, 1e-5, 1e-4],
    },
    "shifts": {
        "inverted": "255 - pixel (light garments on a dark background become dark on light)",
        "low contrast": "0.5 * pixel + 64 (contrast halved, background grey)",
    },
}


def shift(images: np.ndarray, kind: str) -> np.ndarray:
    """The test images under a domain shift (see ``PARAMS["shifts"]``), still uint8."""
    x = images.astype("float32")
    if kind == "inverted":
        x = 255.0 - x
    elif kind == "low contrast":
        x = 0.5 * x + 64.0
    else:
        raise ValueError(f"unknown shift {kind!r}; choose from {', '.join(PARAMS['shifts'])}")
    return np.clip(np.round(x), 0, 255).astype("uint8")


def load_sets(per_class: int, seed: int, params: dict) -> dict:
    """Train, validation, test and the shifted test sets (ImageData) for one size and seed."""
    from ftutils import data

    train_all, test_all = data.load_fashion_mnist()
    rest, held_out = data.split(train_all, 0.1, seed=0)
    test = data.per_class(test_all, params["test_per_class"], seed=0)
    sets = {
        "train": data.per_class(rest, per_class, seed=seed),
        "val": data.per_class(held_out, params["val_per_class"], seed=seed),
        "test": test,
    }
    for kind in params["shifts"]:
        sets[kind] = data.ImageData(shift(test.images, kind), test.labels, test.class_names)
    return sets


def evaluate(model, at: str, sets: dict) -> dict:
    """Accuracy of the classifier on every set but train, through its part above ``at``."""
    from ftutils import frozen, training

    part = frozen.cut(model, at)
    return {
        f"{name}_accuracy": training.accuracy(
            part.upper, frozen.activations(part.lower, d), d.labels
        )
        for name, d in sets.items()
        if name != "train"
    }


def new_classifier(seed: int, params: dict):
    from ftutils import config, models

    config.set_seed(seed)
    return models.build_classifier(params["backbone"], 10, params["image_size"])


def train_head(model, sets: dict, seed: int, params: dict) -> None:
    """Phase 1: the head on cached pooled features, base frozen, early stopping."""
    from ftutils import config, recipe

    config.set_seed(seed)
    recipe.fine_tune(
        model, sets["train"], sets["val"], head_epochs=params["head_epochs"], finetune_epochs=0,
        head_lr=params["head_lr"], patience=params["head_patience"], seed=seed,
    )  # fmt: skip


def finetune(model, first: str, sets: dict, seed: int, params: dict, optimizer: str, lr: float):
    """Phase 2 from the model's current head: unfreeze from ``first``; (record, seconds)."""
    from ftutils import config, recipe

    config.set_seed(seed)
    start = time.perf_counter()
    record = recipe.fine_tune(
        model, sets["train"], sets["val"], head_epochs=0,
        finetune_epochs=params["finetune_epochs"], finetune_lr=lr, unfreeze_from=first,
        optimizer=optimizer, patience=params["finetune_patience"], seed=seed,
    )  # fmt: skip
    return record, time.perf_counter() - start


def _phase2_row(model, record, seconds: float, first: str, sets: dict) -> dict:
    from ftutils import models

    val_loss = record.series("val_loss")
    return {
        **evaluate(model, first, sets),
        "best_val_loss": float(np.nanmin(val_loss)),
        "epochs": len(record.rows),
        "best_epoch": int(np.nanargmin(val_loss)) + 1,
        "train_seconds": seconds,
        "seconds_per_epoch": seconds / max(len(record.rows), 1),
        "trainable_parameters": models.trainable_summary(model)["trainable"],
    }


def run_unit(per_class: int, seed: int, params: dict, only: set, done: set, save) -> None:
    """Every run of one data size and seed that ``only`` asks for and ``done`` lacks."""
    from ftutils import backbones, models

    depths = params["depths"]
    todo = []
    if "depth" in only:
        todo += [("depth", d, params["optimizer"], params["finetune_lr"]) for d in depths]
    if "lpft" in only and per_class == params["lpft_per_class"]:
        lr = params["finetune_lr"]
        todo += [("lpft", m, params["optimizer"], lr) for m in ("LP", "LP-FT", "FT")]
    if "optimizer" in only and per_class in params["optimizer_per_class"]:
        for name, lrs in params["optimizer_lrs"].items():
            todo += [("optimizer", name, name, lr) for lr in lrs]
    todo = [t for t in todo if (t[0], per_class, seed, t[1], t[3]) not in done]
    if not todo:
        return
    sets = load_sets(per_class, seed, params)
    model = new_classifier(seed, params)
    start = time.perf_counter()
    train_head(model, sets, seed, params)
    head_seconds = time.perf_counter() - start
    # get_weights() leaves out the dropout layer's random state: it runs on from one phase-2
    # run to the next, so runs of one unit see different dropout masks (as another seed
    # would). The order of the runs is fixed, so the file is reproducible all the same.
    after_head = model.get_weights()
    base = models.base_of(model)
    same: dict = {}  # phase-2 runs of this unit that another experiment repeats exactly
    for experiment, setting, optimizer, lr in todo:
        row = {"experiment": experiment, "per_class": per_class, "seed": seed,
               "setting": setting, "optimizer": optimizer, "learning_rate": lr}  # fmt: skip
        if experiment == "depth" and depths[setting] is None or setting == "LP":
            backbones.freeze(base)
            model.set_weights(after_head)
            first = depths[params["lpft_depth"]] if setting == "LP" else "block_16_expand"
            counts = models.trainable_summary(model)
            row |= {**evaluate(model, first, sets), "epochs": 0, "train_seconds": 0.0,
                    "trainable_parameters": counts["trainable"]}  # fmt: skip
        elif setting == "FT":  # the same phase 2 from a random head
            first = depths[params["lpft_depth"]]
            fresh = new_classifier(seed, params)
            record, seconds = finetune(fresh, first, sets, seed, params, optimizer, lr)
            row |= _phase2_row(fresh, record, seconds, first, sets)
        else:
            first = depths[
                setting if experiment == "depth"
                else params["lpft_depth"] if experiment == "lpft" else params["optimizer_depth"]
            ]  # fmt: skip
            if (first, optimizer, lr) not in same:  # e.g. LP-FT is the depth study's top block
                backbones.freeze(base)
                model.set_weights(after_head)
                record, seconds = finetune(model, first, sets, seed, params, optimizer, lr)
                same[first, optimizer, lr] = _phase2_row(model, record, seconds, first, sets)
            row |= same[first, optimizer, lr]
        row["head_seconds"] = head_seconds
        save(row)
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}),
              flush=True)  # fmt: skip


def provenance(argv: list[str], params: dict) -> dict:
    from ftutils import studies

    return studies.record(
        "python scripts/depth_study.py " + " ".join(argv),
        params,
        "ImageNet MobileNetV2 1.0 (224 no-top file, loaded into a 96-px base)",
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--per-class", type=int, nargs="+", help="override PARAMS['per_class']")
    parser.add_argument("--seeds", type=int, nargs="+", help="override PARAMS['seeds']")
    parser.add_argument("--only", nargs="+", default=["depth", "lpft", "optimizer"])
    args = parser.parse_args(argv)

    import ftutils

    ftutils.setup(seed=0, verbose=False)
    params = dict(PARAMS)
    if args.per_class:
        params["per_class"] = args.per_class
    if args.seeds:
        params["seeds"] = args.seeds
    result = {"provenance": provenance(argv, params), "runs": []}
    if args.out.is_file():
        previous = json.loads(args.out.read_text())
        if previous["provenance"]["parameters"] == json.loads(json.dumps(params)):
            result["runs"] = previous["runs"]  # resume
    done = {(r["experiment"], r["per_class"], r["seed"], r["setting"], r["learning_rate"])
            for r in result["runs"]}  # fmt: skip

    def save(row: dict) -> None:
        from ftutils import studies

        result["runs"].append(row)
        result["provenance"]["finished"] = studies.now()
        studies.write_json(args.out, result)

    only = set(args.only)
    # optimizers: seed 0 tries every learning rate; later seeds only each optimizer's choice
    first_seed, *other_seeds = params["seeds"]
    for per_class in params["per_class"]:  # the smaller sizes first: complete over seeds
        for seed in params["seeds"]:
            run_unit(per_class, seed, params, only - {"optimizer"}, done, save)
    for per_class in params["optimizer_per_class"] if "optimizer" in only else []:
        if per_class not in params["per_class"]:
            continue
        run_unit(per_class, first_seed, params, {"optimizer"}, done, save)
        chosen = choose_learning_rates(result["runs"], per_class)
        grid = dict(params)
        grid["optimizer_lrs"] = {name: [lr] for name, lr in chosen.items()}
        for seed in other_seeds:
            run_unit(per_class, seed, grid, {"optimizer"}, done, save)
    return 0


def choose_learning_rates(runs: list[dict], per_class: int) -> dict[str, float]:
    """Each optimizer's phase-2 learning rate with the lowest validation loss on the first seed."""
    mine = [r for r in runs if r["experiment"] == "optimizer" and r["per_class"] == per_class]
    first = min(r["seed"] for r in mine)
    best: dict[str, tuple[float, float]] = {}
    for r in mine:
        if r["seed"] == first:
            if r["setting"] not in best or r["best_val_loss"] < best[r["setting"]][0]:
                best[r["setting"]] = (r["best_val_loss"], r["learning_rate"])
    return {name: lr for name, (_, lr) in best.items()}


if __name__ == "__main__":
    sys.exit(main())
