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
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    for name, value in DEFAULTS.items():
        parser.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    import ftutils

    ftutils.setup(seed=0, verbose=False)
    config = {name: getattr(args, name) for name in DEFAULTS}
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
