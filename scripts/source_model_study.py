"""Choosing the source model (§4.4, step 1): does the better ImageNet model transfer better?

Each offline backbone (MobileNet alpha 0.25, MobileNet alpha 1.0, MobileNetV2 alpha 1.0) is
measured on the default task, Fashion-MNIST, in two ways, on the same seeds:

- fixed features: the base frozen, a new dense softmax head trained on its pooled features
  (cached), stopped early on the validation loss;
- fine-tuned: from that head, the base's last block unfrozen (BatchNormalization frozen)
  at a ten times lower learning rate, stopped early on the validation loss
  (``ftutils.recipe.fine_tune``'s second phase).

A seed draws the training and validation images (``data.per_class``) and the head's
initialisation; the test images are the same for every seed and backbone, so the backbones
are compared paired, seed by seed. Results go to a JSON file with their provenance
(command, parameters, library versions, machine, date)::

    python scripts/source_model_study.py    # the study -> data/results/source_model_study.json
    python scripts/source_model_study.py --backbones mobilenet_025 --seeds 0 --out /tmp/one.json

``notebooks/04_4b_choosing_the_source_model.ipynb`` plots the committed file;
``tests/test_source_model_study.py`` re-runs one configuration and compares.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_OUT = PROJECT_DIR / "data" / "results" / "source_model_study.json"

#: ImageNet (ILSVRC-2012 validation) top-1 accuracy at 224 px, single centre crop, as published:
#: - MobileNet alpha 0.25 and 1.0: Howard et al. 2017, "MobileNets: Efficient Convolutional
#:   Neural Networks for Mobile Vision Applications" (arXiv:1704.04861), Table 6 (50.6 % and
#:   70.6 %); the same table is in the tf.keras.applications.mobilenet module documentation.
#: - MobileNetV2 alpha 1.0: Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear
#:   Bottlenecks" (arXiv:1801.04381), Table 4 (72.0 %).
#: The Keras Applications table (keras.io/api/applications) lists 70.4 % and 71.3 % for
#: Keras' own MobileNet and MobileNetV2 weights; it does not list alpha 0.25. Either source
#: gives the same order.
IMAGENET_TOP1 = {"mobilenet_025": 0.506, "mobilenet": 0.706, "mobilenet_v2": 0.720}
IMAGENET_SOURCE = {
    "mobilenet_025": "Howard et al. 2017, Table 6",
    "mobilenet": "Howard et al. 2017, Table 6",
    "mobilenet_v2": "Sandler et al. 2018, Table 4",
}
LABELS = {
    "mobilenet_025": "MobileNet α=0.25",
    "mobilenet": "MobileNet α=1.0",
    "mobilenet_v2": "MobileNetV2 α=1.0",
}

#: The first layer of each base's last block, where fine-tuning unfreezes: MobileNet's 13th
#: depthwise-separable block (depthwise + pointwise convolution), MobileNetV2's 16th inverted
#: residual block with the final 1x1 convolution above it (no skip connection crosses either cut).
TOP_BLOCK = {
    "mobilenet_025": "conv_dw_13",
    "mobilenet": "conv_dw_13",
    "mobilenet_v2": "block_16_expand",
}

DEFAULTS = {
    "image_size": 96,
    "train_per_class": 100,  # labelled training images per class (drawn per seed)
    "val_per_class": 30,  # validation images per class (drawn per seed): early stopping only
    "test_per_class": 100,  # test images per class: the same for every seed and backbone
    "head_epochs": 60,  # upper bound; early stopping on validation loss decides
    "head_lr": 1e-3,
    "head_patience": 5,
    "finetune_epochs": 20,  # upper bound; early stopping on validation loss decides
    "finetune_lr": 1e-4,  # Adam, ten times below the head's rate
    "finetune_patience": 3,
    "batch_size": 32,
}
BACKBONES = ("mobilenet_025", "mobilenet", "mobilenet_v2")
SEEDS = (0, 1, 2, 3, 4)


def splits(seed: int, config: dict):
    """(train, val, test) ImageData: train and val drawn with ``seed``, test fixed (seed 0)."""
    from ftutils import data

    train_all, test_all = data.load_fashion_mnist()
    rest, held_out = data.split(train_all, 0.1, seed=0)
    train = data.per_class(rest, config["train_per_class"], seed=seed)
    val = data.per_class(held_out, config["val_per_class"], seed=seed)
    test = data.per_class(test_all, config["test_per_class"], seed=0)
    return train, val, test


def run_one(backbone: str, seed: int, **overrides) -> dict:
    """Fixed-feature and fine-tuned accuracy of one backbone on one seed (see the module doc).

    ``overrides`` change :data:`DEFAULTS`; with ``finetune_epochs=0`` only the fixed-feature
    part runs (the row then has no ``finetuned_*`` entries).
    """
    from ftutils import config as ftconfig
    from ftutils import frozen, models, recipe, training

    config = {**DEFAULTS, **overrides}
    train, val, test = splits(seed, config)
    started = time.perf_counter()
    ftconfig.set_seed(seed)
    model = models.build_classifier(backbone, train.n_classes, config["image_size"])
    common = {"batch_size": config["batch_size"], "seed": seed}
    record = recipe.fine_tune(
        model, train, val, head_epochs=config["head_epochs"], finetune_epochs=0,
        head_lr=config["head_lr"], patience=config["head_patience"], **common,
    )  # fmt: skip
    pool = frozen.cut(model, "pool")
    fixed = {
        name: training.accuracy(pool.upper, frozen.activations(pool.lower, part), part.labels)
        for name, part in (("val", val), ("test", test))
    }
    head_epochs = len(record.rows)
    row = {
        "backbone": backbone,
        "seed": seed,
        "imagenet_top1": IMAGENET_TOP1[backbone],
        "feature_dim": int(pool.lower.output.shape[-1]),
        "fixed_val": fixed["val"],
        "fixed_test": fixed["test"],
        "head_epochs_run": head_epochs,
    }
    if not config["finetune_epochs"]:  # fixed features only (a quick check)
        return {**row, "seconds": round(time.perf_counter() - started, 1)}
    record = recipe.fine_tune(
        model, train, val, head_epochs=0, finetune_epochs=config["finetune_epochs"],
        finetune_lr=config["finetune_lr"], unfreeze_from=TOP_BLOCK[backbone],
        patience=config["finetune_patience"], record=record, **common,
    )  # fmt: skip
    top = frozen.cut(model, TOP_BLOCK[backbone])
    tuned = {
        name: training.accuracy(top.upper, frozen.activations(top.lower, part), part.labels)
        for name, part in (("val", val), ("test", test))
    }
    counts = models.trainable_summary(model)
    return {
        **row,
        "total_parameters": counts["total"],
        "finetuned_parameters": counts["trainable"],  # the last block and the head
        "finetuned_val": tuned["val"],
        "finetuned_test": tuned["test"],
        "finetune_epochs_run": len(record.rows) - head_epochs,
        "seconds": round(time.perf_counter() - started, 1),
    }


#: The wider fixed-feature comparison (``--sweep``): every MobileNet whose ImageNet no-top file
#: the offline Keras cache holds, each at the input size its published accuracy was measured
#: at (Keras loads the file of that size). ImageNet top-1 (single centre crop) as published
#: with the checkpoints Keras' MobileNet weights were translated from (the keras.applications
#: mobilenet module says so): TensorFlow-Slim's tables, tensorflow/models
#: research/slim/nets/mobilenet_v1.md (MobileNet_v1_<alpha>_<size>) and
#: research/slim/nets/mobilenet/README.md (mobilenet_v2_1.0_224). These differ from
#: :data:`IMAGENET_TOP1` (the papers) by at most a point; one source keeps the seven comparable.
SWEEP = {
    # name: (constructor, alpha, input size, ImageNet top-1)
    "mobilenet_025_128": ("MobileNet", 0.25, 128, 0.415),
    "mobilenet_025_160": ("MobileNet", 0.25, 160, 0.455),
    "mobilenet_025_192": ("MobileNet", 0.25, 192, 0.477),
    "mobilenet_025_224": ("MobileNet", 0.25, 224, 0.498),
    "mobilenet_100_224": ("MobileNet", 1.0, 224, 0.709),
    "mobilenet_v2_100_224": ("MobileNetV2", 1.0, 224, 0.718),
}
SWEEP_SOURCE = (
    "TensorFlow-Slim checkpoint tables: tensorflow/models research/slim/nets/mobilenet_v1.md "
    "and research/slim/nets/mobilenet/README.md (single centre crop, ILSVRC-2012 validation)"
)
#: For readers online: other keras.applications bases, at 224 px, with Keras' own measured
#: top-1 (keras.io/api/applications). Not in the offline cache, so not in the committed file.
SWEEP_ONLINE = {
    "resnet50_224": ("ResNet50", None, 224, 0.749),
    "efficientnetb0_224": ("EfficientNetB0", None, 224, 0.771),
    "densenet121_224": ("DenseNet121", None, 224, 0.750),
}
SWEEP_DEFAULT_OUT = PROJECT_DIR / "data" / "results" / "source_model_sweep.json"
SWEEP_SEEDS = tuple(range(10))


def sweep_extractor(name: str):
    """The ImageNet base ``name`` of :data:`SWEEP` (or :data:`SWEEP_ONLINE`) with its
    ``preprocess_input`` and global average pooling: images in [0, 255] -> pooled features.
    Built by Keras' own ``weights="imagenet"`` path, at the size its accuracy was measured."""
    import keras

    constructor, alpha, size, _ = {**SWEEP, **SWEEP_ONLINE}[name]
    kwargs = {} if alpha is None else {"alpha": alpha}
    base = getattr(keras.applications, constructor)(
        include_top=False, weights="imagenet", input_shape=(size, size, 3), pooling="avg", **kwargs
    )
    module = {
        "MobileNet": keras.applications.mobilenet,
        "MobileNetV2": keras.applications.mobilenet_v2,
        "ResNet50": keras.applications.resnet50,
        "EfficientNetB0": keras.applications.efficientnet,
        "DenseNet121": keras.applications.densenet,
    }[constructor]
    inputs = keras.Input((size, size, 3))
    return keras.Model(inputs, base(module.preprocess_input(inputs)), name=f"{name}_features")


#: The sweep's image pools: features are computed once per base for a pool of training and one
#: of validation images; each seed draws the study's 100 + 30 per class from them.
SWEEP_POOLS = {"train_pool_per_class": 150, "val_pool_per_class": 40}


def sweep_draw(labels, k: int, seed: int):
    """Indices of ``k`` images per class of ``labels``, drawn with ``seed``, in label order."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return np.concatenate(
        [np.sort(rng.choice(np.flatnonzero(labels == c), k, replace=False))
         for c in np.unique(labels)]
    )  # fmt: skip


#: L2 strengths of the sweep's linear probe, per training image, relative to the mean
#: squared singular value of the standardized training features; chosen on validation.
SWEEP_RIDGE = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


def ridge_probe(x_train, y_train, x_val, y_val, x_test, y_test, n_classes: int = 10) -> dict:
    """A linear probe on fixed features: ridge regression onto one-hot labels (a least-squares
    classifier, closed form: no initialisation, no epochs), features standardized on the
    training images, its L2 strength picked from :data:`SWEEP_RIDGE` by validation accuracy
    (ties: the stronger). Kornblith et al. 2019 probe with L2-regularised logistic regression
    chosen on validation; the least-squares form needs no iterative solver."""
    import numpy as np

    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    z = {k: (x - mean) / std for k, x in (("train", x_train), ("val", x_val), ("test", x_test))}
    targets = np.eye(n_classes)[y_train]
    offset = targets.mean(0)
    u, sv, vt = np.linalg.svd(z["train"], full_matrices=False)
    scale = np.mean(sv**2)
    best = None
    for strength in SWEEP_RIDGE:
        w = vt.T @ ((sv / (sv**2 + strength * scale))[:, None] * (u.T @ (targets - offset)))
        val = float(np.mean(np.argmax(z["val"] @ w + offset, 1) == y_val))
        if best is None or val >= best[0]:
            best = (val, strength, w)
    val, strength, w = best
    test = float(np.mean(np.argmax(z["test"] @ w + offset, 1) == y_test))
    return {"fixed_val": val, "fixed_test": test, "ridge": strength}


def sweep_one(name: str, seeds, **overrides) -> list[dict]:
    """Fixed-feature test accuracy of base ``name`` on every seed: features computed once for
    the pools (:data:`SWEEP_POOLS`) and the test images, then per seed a draw of the study's
    numbers of training and validation images from the pools and a linear probe
    (:func:`ridge_probe`). One row per seed."""
    import numpy as np

    from ftutils import data, frozen

    config = {**DEFAULTS, **SWEEP_POOLS, **overrides}
    started = time.perf_counter()
    extractor = sweep_extractor(name)
    train_all, test_all = data.load_fashion_mnist()
    rest, held_out = data.split(train_all, 0.1, seed=0)
    pools = {
        "train": data.per_class(rest, config["train_pool_per_class"], seed=0),
        "val": data.per_class(held_out, config["val_pool_per_class"], seed=0),
        "test": data.per_class(test_all, config["test_per_class"], seed=0),
    }
    features = {
        part: frozen.activations(extractor, images, use_disk_cache=False)
        for part, images in pools.items()
    }
    labels = {part: np.asarray(images.labels) for part, images in pools.items()}
    _, _, size, top1 = {**SWEEP, **SWEEP_ONLINE}[name]
    rows = []
    for seed in seeds:
        pick = {
            "train": sweep_draw(labels["train"], config["train_per_class"], seed),
            "val": sweep_draw(labels["val"], config["val_per_class"], seed + 1000),
        }
        x = {part: features[part][index] for part, index in pick.items()}
        y = {part: labels[part][index] for part, index in pick.items()}
        probe = ridge_probe(x["train"], y["train"], x["val"], y["val"], features["test"],
                            labels["test"])  # fmt: skip
        rows.append(
            {
                "backbone": name,
                "seed": seed,
                "imagenet_top1": top1,
                "image_size": size,
                "feature_dim": int(features["test"].shape[1]),
                **probe,
            }
        )
    seconds = round(time.perf_counter() - started, 1)
    for row in rows:
        row["seconds, all seeds"] = seconds
    return rows


def run_sweep(argv: list[str], names, seeds, out: Path, config: dict) -> dict:
    """Every base of ``names`` on every seed, written to ``out`` after each base."""
    import keras
    import numpy as np
    import tensorflow as tf

    about = {
        "command": "python scripts/source_model_study.py " + " ".join(argv),
        "parameters": {
            **{
                k: config[k]
                for k in (
                    "train_per_class",
                    "val_per_class",
                    "test_per_class",
                    "head_epochs",
                    "head_lr",
                    "head_patience",
                    "batch_size",
                )
            },
            "backbones": list(names),
            "seeds": list(seeds),
        },  # fmt: skip
        "imagenet_top1_source": SWEEP_SOURCE,
        "weights": "ImageNet no-top files from the Keras cache, each at its own input size",
        "dataset": "Fashion-MNIST (keras.datasets.fashion_mnist), 10 classes, grey 28x28 "
        "images resized to each base's input size and repeated to RGB",
        "versions": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "numpy": np.__version__,
        },
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}",
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    rows = []
    for name in names:
        rows += sweep_one(name, seeds, **config)
        mean = np.mean([r["fixed_test"] for r in rows if r["backbone"] == name])
        print(f"{name:<22} fixed {mean:.3f} ({rows[-1]['seconds, all seeds']:.0f} s)", flush=True)
        result = {"provenance": about, "runs": rows}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    return result


def spearman(x, y) -> float:
    """Spearman's rank correlation of two equally long sequences (average ranks for ties)."""
    import numpy as np
    import pandas as pd

    rx, ry = pd.Series(x).rank().to_numpy(), pd.Series(y).rank().to_numpy()
    return float(np.corrcoef(rx, ry)[0, 1])


def rank_correlation(runs, column: str = "fixed_test", n_boot: int = 2000, seed: int = 0):
    """Spearman's rho between ImageNet top-1 and the mean of ``column`` over seeds, with
    its uncertainty: a 95 % interval from resampling the seeds (with replacement, the same
    seeds for every base: a seed draws the same images for all), and the one-sided
    permutation p-value of rho under "no relation" (every order of the bases equally likely).
    ``runs``: a DataFrame with columns backbone, seed, imagenet_top1 and ``column``."""
    import itertools

    import numpy as np

    wide = runs.pivot(index="seed", columns="backbone", values=column)
    top1 = runs.groupby("backbone")["imagenet_top1"].first()[wide.columns]
    rho = spearman(top1, wide.mean())
    rng = np.random.default_rng(seed)
    boot = [
        spearman(top1, wide.iloc[rng.integers(0, len(wide), len(wide))].mean())
        for _ in range(n_boot)
    ]
    perms = [spearman(p, wide.mean()) for p in itertools.permutations(top1.to_numpy())]
    per_seed = [spearman(top1, wide.loc[s]) for s in wide.index]
    return {
        "rho": rho,
        "interval": tuple(float(q) for q in np.quantile(boot, [0.025, 0.975])),
        "p_value": float(np.mean(np.asarray(perms) >= rho - 1e-12)),
        "per_seed": per_seed,
        "bases": len(top1),
        "seeds": len(wide),
    }


def provenance(argv: list[str], config: dict, backbones, seeds) -> dict:
    """What produced the results: command, parameters, library versions, machine, date."""
    import keras
    import numpy as np
    import tensorflow as tf

    return {
        "command": "python scripts/source_model_study.py " + " ".join(argv),
        "parameters": {**config, "backbones": list(backbones), "seeds": list(seeds)},
        "top_block": {name: TOP_BLOCK[name] for name in backbones},
        "imagenet_top1_source": {name: IMAGENET_SOURCE[name] for name in backbones},
        "weights": "ImageNet no-top weights from the Keras cache (alpha 0.25 and 1.0 MobileNet "
        "224-px files, MobileNetV2 1.0 224-px file), loaded into bases built at image_size",
        "dataset": "Fashion-MNIST (keras.datasets.fashion_mnist), 10 classes, grey 28x28 "
        "images resized to image_size and repeated to RGB",
        "versions": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "numpy": np.__version__,
        },
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}",
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=BACKBONES)
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="with --sweep the default is data/results/source_model_sweep.json",
    )
    parser.add_argument(
        "--sweep",
        nargs="*",
        metavar="BASE",
        help="the wider fixed-feature comparison instead: the bases given (default: every "
        f"cached MobileNet, {', '.join(SWEEP)}; online also {', '.join(SWEEP_ONLINE)}), "
        f"on seeds {SWEEP_SEEDS[0]}-{SWEEP_SEEDS[-1]} unless --seeds",
    )
    for name, value in DEFAULTS.items():
        parser.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    import ftutils

    ftutils.setup(seed=0, verbose=False)
    config = {name: getattr(args, name) for name in DEFAULTS}
    if args.sweep is not None:
        names = args.sweep or list(SWEEP)
        unknown = sorted(set(names) - set(SWEEP) - set(SWEEP_ONLINE))
        if unknown:
            raise SystemExit(f"unknown bases {unknown}: choose from {[*SWEEP, *SWEEP_ONLINE]}")
        seeds = args.seeds if "--seeds" in argv else list(SWEEP_SEEDS)
        out = args.out if "--out" in argv else SWEEP_DEFAULT_OUT
        run_sweep(argv, names, seeds, out, config)
        print(f"wrote {out}")
        return 0
    rows = []
    for seed in args.seeds:
        for backbone in args.backbones:
            rows.append(run_one(backbone, seed, **config))
            row = rows[-1]
            tuned = row.get("finetuned_test", float("nan"))
            print(
                f"seed {seed} {backbone:<14} fixed {row['fixed_test']:.3f}  fine-tuned "
                f"{tuned:.3f}  ({row['head_epochs_run']}+{row.get('finetune_epochs_run', 0)} "
                f"epochs, {row['seconds']:.0f} s)",
                flush=True,
            )
    result = {"provenance": provenance(argv, config, args.backbones, args.seeds), "runs": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
