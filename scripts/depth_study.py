"""How deep to fine-tune, and with what (§4.4): the experiments too large for the notebook.

    python scripts/depth_study.py                  # the full study -> data/results/depth_study.json
    python scripts/depth_study.py --out /tmp/x.json --per-class 20 --seeds 0 --only depth
    python scripts/depth_study.py --merge /tmp/a.json /tmp/b.json   # parts run in parallel

MobileNetV2 (ImageNet weights) on Fashion-MNIST at 96 px. For every training-set size and
seed, the head is trained first with the base frozen (phase 1 of ``ftutils.recipe.fine_tune``,
early stopping on validation loss), then, from that same head, phase 2 unfreezes the base
from a given layer (BatchNormalization frozen) and trains with early stopping on validation
loss. Four experiments:

* ``depth``: head only vs the top block vs the top four blocks, at several data sizes (more
  seeds at the sizes where the effect is near its spread: ``more_seeds``);
* ``small val``: the same at 5 and 20 images per class, but with as many validation images per
  class as training images (the generous 50 per class of ``depth`` is more labelled data than
  a practitioner with 5 images per class has), every choice and the early stopping on it;
* ``optimizer``: SGD, momentum, AdaGrad, RMSProp and Adam for phase 2 (top block unfrozen) at
  100 images per class, where the top block's fine-tune gains over the head. Each tries the
  learning rates of its grid on the first seed and keeps the one with the lowest validation
  loss; a grid whose choice is at one of its ends is extended a decade past that end until the
  choice is inside it. The later seeds run each optimizer at its chosen rate;
* ``lpft``: Kumar et al. (ICLR 2022) as they tested it: the whole base fine-tuned
  (BatchNormalization frozen) from a random head (FT) and from the linear probe's trained head
  (LP-FT), against the linear probe (LP), with ``lpft_per_class`` images per class, both at
  the learning rate of the other fine-tunes (``lpft_lrs``; given several, the first seed
  chooses as for an optimizer). Tested on the test images and on shifted copies of them built
  from transforms no training run here sees (none of these runs augments its images).

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
    "more_seeds": {},  # depth: further seeds at some sizes, e.g. {"20": [3, 4]}
    "more_seeds_depths": ["head only", "top block"],  # the depths those further seeds run
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
    "depth_shifts": ["inverted", "low contrast"],
    # realistic few-shot validation: as many validation images per class as training images
    "small_val_per_class": [5, 20],
    "small_val_seeds": [0, 1, 2],
    "small_val_depths": ["head only", "top block"],
    # LP-FT vs FT, the whole base fine-tuned (first trainable layer None: all of it)
    "lpft_per_class": 50,
    "lpft_seeds": [0, 1, 2, 3, 4],
    "lpft_epochs": 15,
    "lpft_patience": 3,
    "lpft_lrs": [1e-4],  # the phase-2 rate of FT and LP-FT (a longer list: the first seed chooses)
    "lpft_shifts": ["inverted", "low contrast", "blur", "shrunk"],
    "optimizer_per_class": [100],  # sizes to compare the optimizers at
    "optimizer_depth": "top block",
    "optimizer_seeds": [0, 1, 2],
    # phase-2 learning rates the first seed tries per optimizer (extended past a chosen end)
    "optimizer_lrs": {
        "sgd": [1e-4, 1e-3, 1e-2],
        "momentum": [1e-5, 1e-4, 1e-3],
        "adagrad": [1e-4, 1e-3, 1e-2],
        "rmsprop": [1e-6, 1e-5, 1e-4],
        "adam": [1e-5, 1e-4, 1e-3],
    },
    "max_extensions": 2,  # decades a grid may grow past one end
    "shifts": {
        "inverted": "255 - pixel (light garments on a dark background become dark on light)",
        "low contrast": "0.5 * pixel + 64 (contrast halved, background grey)",
        "blur": "Gaussian blur, sigma 0.75 pixels of the 28-pixel image",
        "shrunk": "the garment shrunk to 80 % of the frame, centred on a black border",
    },
}


def _blur(x: np.ndarray, sigma: float = 0.75) -> np.ndarray:
    """Separable Gaussian blur of a batch of (n, h, w) images, edges repeated."""
    radius = int(np.ceil(3 * sigma))
    t = np.arange(-radius, radius + 1)
    kernel = np.exp(-(t**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    for axis in (1, 2):
        padded = np.pad(x, [(radius, radius) if a == axis else (0, 0) for a in range(x.ndim)],
                        mode="edge")  # fmt: skip
        x = sum(w * np.take(padded, np.arange(i, i + x.shape[axis]), axis=axis)
                for i, w in enumerate(kernel))  # fmt: skip
    return x


def _shrink(x: np.ndarray, factor: float = 0.8) -> np.ndarray:
    """Each (h, w) image resized to ``factor`` of its side, centred on a black frame."""
    import tensorflow as tf

    n, h, w = x.shape[:3]
    sh, sw = round(h * factor), round(w * factor)
    small = tf.image.resize(x.reshape(n, h, w, -1), (sh, sw), antialias=True).numpy()
    out = np.zeros((n, h, w, small.shape[-1]), dtype="float32")
    top, left = (h - sh) // 2, (w - sw) // 2
    out[:, top : top + sh, left : left + sw] = small
    return out.reshape(x.shape)


def shift(images: np.ndarray, kind: str) -> np.ndarray:
    """The test images under a domain shift (see ``PARAMS["shifts"]``), still uint8."""
    x = images.astype("float32")
    if kind == "inverted":
        x = 255.0 - x
    elif kind == "low contrast":
        x = 0.5 * x + 64.0
    elif kind == "blur":
        x = _blur(x)
    elif kind == "shrunk":
        x = _shrink(x)
    else:
        raise ValueError(f"unknown shift {kind!r}; choose from {', '.join(PARAMS['shifts'])}")
    return np.clip(np.round(x), 0, 255).astype("uint8")


def load_sets(
    per_class: int, seed: int, params: dict, shifts=None, val_per_class: int | None = None
) -> dict:
    """Train, validation, test and the shifted test sets (ImageData) for one size and seed:
    the shifts named in ``shifts`` (default: ``params["depth_shifts"]``) that
    ``params["shifts"]`` describes; ``val_per_class`` (default ``params["val_per_class"]``)."""
    from ftutils import data

    train_all, test_all = data.load_fashion_mnist()
    rest, held_out = data.split(train_all, 0.1, seed=0)
    test = data.per_class(test_all, params["test_per_class"], seed=0)
    sets = {
        "train": data.per_class(rest, per_class, seed=seed),
        "val": data.per_class(held_out, val_per_class or params["val_per_class"], seed=seed),
        "test": test,
    }
    for kind in params.get("depth_shifts", params["shifts"]) if shifts is None else shifts:
        if kind not in params["shifts"]:
            continue
        sets[kind] = data.ImageData(shift(test.images, kind), test.labels, test.class_names)
    return sets


def evaluate(model, at: str | None, sets: dict) -> dict:
    """Accuracy of the classifier on every set but train, through its part above ``at``
    (``None``: above the pooled features)."""
    from ftutils import frozen, training

    part = frozen.cut(model, at or "pool")
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


def finetune(model, first: str | None, sets: dict, seed: int, params: dict, optimizer: str,
             lr: float, epochs: int | None = None, patience: int | None = None):  # fmt: skip
    """Phase 2 from the model's current head: unfreeze from ``first`` (``None``: the whole
    base); (record, seconds)."""
    from ftutils import config, recipe

    config.set_seed(seed)
    start = time.perf_counter()
    record = recipe.fine_tune(
        model, sets["train"], sets["val"], head_epochs=0,
        finetune_epochs=epochs or params["finetune_epochs"], finetune_lr=lr,
        unfreeze_from=first, optimizer=optimizer,
        patience=patience or params["finetune_patience"], seed=seed,
    )  # fmt: skip
    return record, time.perf_counter() - start


def _phase2_row(model, record, seconds: float, first: str | None, sets: dict) -> dict:
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


def lpft_grid(params: dict) -> dict[str, list[float]]:
    """The phase-2 learning rates of FT and of LP-FT: ``params["lpft_lrs"]``, one list for
    both or one per method."""
    lrs = params["lpft_lrs"]
    return dict(lrs) if isinstance(lrs, dict) else {"FT": list(lrs), "LP-FT": list(lrs)}


def _todo(experiment: str, params: dict) -> list[tuple[str, str, float]]:
    """(setting, optimizer, learning rate) of every run of one unit of ``experiment``."""
    optimizer, lr = params["optimizer"], params["finetune_lr"]
    if experiment == "depth":
        return [(d, optimizer, lr) for d in params["depths"]]
    if experiment == "small val":
        return [(d, optimizer, lr) for d in params["small_val_depths"]]
    if experiment == "optimizer":
        return [("head only", optimizer, 0.0)] + [
            (name, name, rate) for name, rates in params["optimizer_lrs"].items() for rate in rates
        ]
    if experiment == "lpft":
        return [("LP", optimizer, 0.0)] + [
            (method, optimizer, rate) for method, rates in lpft_grid(params).items()
            for rate in rates
        ]  # fmt: skip
    raise ValueError(f"unknown experiment {experiment!r}")


EXPERIMENTS = ("depth", "small val", "optimizer", "lpft")


def run_unit(per_class: int, seed: int, params: dict, only: set, done: set, save) -> None:
    """Every run of one data size and seed that ``only`` asks for and ``done`` lacks: for
    each experiment, one head trained with the base frozen, then each phase 2 from it."""
    for experiment in EXPERIMENTS:
        if experiment in only:
            _run_experiment(experiment, per_class, seed, params, done, save)


def _run_experiment(experiment: str, per_class: int, seed: int, params: dict, done: set,
                    save) -> None:  # fmt: skip
    from ftutils import backbones, models

    depths = params["depths"]
    todo = [t for t in _todo(experiment, params)
            if (experiment, per_class, seed, t[0], t[2]) not in done]  # fmt: skip
    if experiment == "depth" and seed not in params["seeds"]:
        todo = [t for t in todo if t[0] in params.get("more_seeds_depths", params["depths"])]
    if not todo:
        return
    sets = load_sets(
        per_class, seed, params,
        shifts=params["lpft_shifts"] if experiment == "lpft" else None,
        val_per_class=per_class if experiment == "small val" else None,
    )  # fmt: skip
    model = new_classifier(seed, params)
    start = time.perf_counter()
    train_head(model, sets, seed, params)
    head_seconds = time.perf_counter() - start
    # get_weights() leaves out the dropout layer's random state: it runs on from one phase-2
    # run to the next, so runs of one unit see different dropout masks (as another seed
    # would). The order of the runs is fixed, so the file is reproducible all the same.
    after_head = model.get_weights()
    base = models.base_of(model)
    for setting, optimizer, lr in todo:
        row = {"experiment": experiment, "per_class": per_class, "seed": seed,
               "setting": setting, "optimizer": optimizer, "learning_rate": lr,
               "val_per_class": len(sets["val"]) // sets["val"].n_classes}  # fmt: skip
        if experiment == "lpft":
            first = None  # the whole base
        elif experiment == "optimizer":
            first = None if setting == "head only" else depths[params["optimizer_depth"]]
        else:
            first = depths[setting]
        if setting in ("head only", "LP"):
            backbones.freeze(base)
            model.set_weights(after_head)
            at = "block_16_expand" if experiment in ("depth", "small val") else None
            counts = models.trainable_summary(model)
            row |= {**evaluate(model, at, sets), "epochs": 0, "train_seconds": 0.0,
                    "trainable_parameters": counts["trainable"]}  # fmt: skip
        else:
            kwargs = {}
            if experiment == "lpft":
                kwargs = {"epochs": params["lpft_epochs"], "patience": params["lpft_patience"]}
            if setting == "FT":  # the same phase 2 from a random head
                trained = new_classifier(seed, params)
            else:
                trained = model
                backbones.freeze(base)
                model.set_weights(after_head)
            record, seconds = finetune(trained, first, sets, seed, params, optimizer, lr, **kwargs)
            row |= _phase2_row(trained, record, seconds, first, sets)
        row["head_seconds"] = head_seconds
        save(row)
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}),
              flush=True)  # fmt: skip


def depth_seeds(params: dict, per_class: int) -> list[int]:
    """The seeds of the depth experiment at one size: ``seeds`` and its ``more_seeds``."""
    return list(params["seeds"]) + list(params.get("more_seeds", {}).get(str(per_class), []))


def _round_rate(lr: float) -> float:
    return float(f"{lr:.0e}")


def extend(grid: dict[str, list[float]], chosen: dict[str, float]) -> dict[str, list[float]]:
    """Each grid grown by a decade past the end its chosen rate sits at (unchanged inside; a
    grid of one rate is a rate fixed in advance, never grown)."""
    grown = {}
    for setting, lrs in grid.items():
        lrs = sorted(lrs)
        lr = chosen.get(setting)
        if len(lrs) < 2:
            pass
        elif lr is not None and np.isclose(lr, lrs[0]):
            lrs = [_round_rate(lrs[0] / 10), *lrs]
        elif lr is not None and np.isclose(lr, lrs[-1]):
            lrs = [*lrs, _round_rate(lrs[-1] * 10)]
        grown[setting] = lrs
    return grown


def tune(experiment: str, per_class: int, params: dict, runs: list, done: set, save) -> None:
    """The first seed tries every rate of the grid (grown past a chosen end, at most
    ``max_extensions`` times); the other seeds run each setting at its chosen rate."""
    key = "optimizer_lrs" if experiment == "optimizer" else "lpft_lrs"
    seeds = params[f"{experiment}_seeds"]
    grid = dict(params[key]) if experiment == "optimizer" else lpft_grid(params)
    for extensions in range(params["max_extensions"] + 1):
        run_unit(per_class, seeds[0], params | {key: grid}, {experiment}, done, save)
        chosen = choose_learning_rates(runs, per_class, experiment)
        grown = extend(grid, chosen)
        if grown == grid or extensions == params["max_extensions"]:
            break
        grid = grown
    at_chosen = {setting: [lr] for setting, lr in chosen.items()}
    for seed in seeds[1:]:
        run_unit(per_class, seed, params | {key: at_chosen}, {experiment}, done, save)


def provenance(argv: list[str], params: dict) -> dict:
    from ftutils import studies

    return studies.record(
        "python scripts/depth_study.py " + " ".join(argv),
        params,
        "ImageNet MobileNetV2 1.0 (224 no-top file, loaded into a 96-px base)",
    )


def run_key(row: dict) -> tuple:
    return (row["experiment"], row["per_class"], row["seed"], row["setting"],
            row["learning_rate"])  # fmt: skip


def merge(parts: list[Path], out: Path, argv: list[str], params: dict, note: str = "") -> int:
    """Join the runs of study files made by parts of the study run in parallel (the first file
    holding a run wins) into ``out``, noting where each part came from."""
    from ftutils import studies

    result = {"provenance": provenance(argv, params) | {"note": note}, "runs": []}
    seen: set = set()
    result["provenance"]["parts"] = []
    for part in parts:
        content = json.loads(Path(part).read_text())
        made = content["provenance"]
        result["provenance"]["parts"].append(
            {k: made.get(k) for k in ("command", "git_commit", "started", "finished")}
            | {"runs": len(content["runs"])}
        )
        for row in content["runs"]:
            if run_key(row) not in seen:
                seen.add(run_key(row))
                result["runs"].append(row)
    result["provenance"]["finished"] = studies.now()
    studies.write_json(out, result)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--per-class", type=int, nargs="+", help="override PARAMS['per_class']")
    parser.add_argument("--seeds", type=int, nargs="+", help="override every list of seeds")
    parser.add_argument("--only", nargs="+", default=list(EXPERIMENTS), choices=EXPERIMENTS)
    parser.add_argument("--merge", type=Path, nargs="+", help="study files to join into --out")
    parser.add_argument("--note", default="", help="with --merge: how the parts were made")
    parser.add_argument(
        "--skip-from", type=Path, nargs="+", default=[],
        help="study files whose runs are not repeated (merge them in after)",
    )  # fmt: skip
    args = parser.parse_args(argv)

    import ftutils

    ftutils.setup(seed=0, verbose=False)
    params = dict(PARAMS)
    if args.per_class:
        params["per_class"] = args.per_class
    if args.seeds:
        params |= {"seeds": args.seeds, "more_seeds": {}, "small_val_seeds": args.seeds,
                   "lpft_seeds": args.seeds, "optimizer_seeds": args.seeds}  # fmt: skip
    if args.merge:
        return merge(args.merge, args.out, argv, params, args.note)
    result = {"provenance": provenance(argv, params), "runs": []}
    if args.out.is_file():
        previous = json.loads(args.out.read_text())
        if previous["provenance"]["parameters"] == json.loads(json.dumps(params)):
            result["runs"] = previous["runs"]  # resume
    done = {run_key(r) for r in result["runs"]}
    known = list(result["runs"])  # what choices of a rate see: these runs and the skipped ones
    for other in args.skip_from:
        skipped = json.loads(other.read_text())["runs"]
        done |= {run_key(r) for r in skipped}
        known += skipped

    def save(row: dict) -> None:
        from ftutils import studies

        result["runs"].append(row)
        known.append(row)
        done.add(run_key(row))
        result["provenance"]["finished"] = studies.now()
        studies.write_json(args.out, result)

    only = set(args.only)
    if "depth" in only:
        for per_class in params["per_class"]:  # the smaller sizes first: complete over seeds
            for seed in depth_seeds(params, per_class):
                run_unit(per_class, seed, params, {"depth"}, done, save)
    if "small val" in only:
        for per_class in params["small_val_per_class"]:
            for seed in params["small_val_seeds"]:
                run_unit(per_class, seed, params, {"small val"}, done, save)
    if "optimizer" in only:
        for per_class in params["optimizer_per_class"]:
            tune("optimizer", per_class, params, known, done, save)
    if "lpft" in only:
        tune("lpft", params["lpft_per_class"], params, known, done, save)
    return 0


def choose_learning_rates(
    runs: list[dict], per_class: int, experiment: str = "optimizer"
) -> dict[str, float]:
    """Each setting's phase-2 learning rate with the lowest validation loss on the first seed
    (the settings that train only the head, which have none, left out)."""
    mine = [r for r in runs if r["experiment"] == experiment and r["per_class"] == per_class
            and "best_val_loss" in r]  # fmt: skip
    first = min(r["seed"] for r in mine)
    best: dict[str, tuple[float, float]] = {}
    for r in mine:
        if r["seed"] == first:
            if r["setting"] not in best or r["best_val_loss"] < best[r["setting"]][0]:
                best[r["setting"]] = (r["best_val_loss"], r["learning_rate"])
    return {name: lr for name, (_, lr) in best.items()}


if __name__ == "__main__":
    sys.exit(main())
