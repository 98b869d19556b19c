"""Augmentation with the top of the base frozen or unfrozen, at 100 images per class (§3.5).

    python scripts/augment_finetune_study.py  # -> data/results/augment_finetune_study.json
    python scripts/augment_finetune_study.py --seeds 0 --out /tmp/augment.json

Fashion-MNIST, MobileNetV2 with ImageNet weights at 96 px, cut at the first layer of its last
block (``block_16_expand``). The training images (100 per class), the validation set (30 per
class) and the test set (50 per class) are chosen as in ``03_5_data_augmentation.ipynb``, and
so are the augmentation (flip, shift, zoom with black fill, contrast, brightness) and the test
sets: clean, the overlapping shift (smaller garments, other lighting) and the four held-out
shift families (blur, inverted contrast, noise, centre crop).

For every seed, two arms, without and with augmentation. With augmentation, ``views``
augmented copies of every training image (drawn with the seed) join the clean images; the
activations below the cut of all of them are computed once (a fixed pool of views, as the
notebook's frozen-base arm does; fresh draws in every step would pass every image through the
whole base in every step). Each arm then trains in two phases, as ``ftutils.recipe.fine_tune``
does: the head on the frozen base (``head_steps`` batches, the result "frozen"), then, from
that head, the last block and ``Conv_1`` unfrozen with BatchNormalization kept frozen
(``finetune_steps`` batches at ``finetune_lr``, the result "unfrozen"). Both arms get the same
numbers of steps; in each phase the weights of the best validation check (every
``check_every`` steps) are kept. Every accuracy is measured at those weights.

Results are written after every seed, with the command, parameters, library versions,
machine and dates; a re-run with the same parameters skips the seeds the file already holds.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
RESULTS = PROJECT / "data" / "results" / "augment_finetune_study.json"

#: What the committed study ran (the transforms and shifts are 03_5's defaults).
PARAMS = {
    "backbone": "mobilenet_v2",
    "image_size": 96,
    "unfreeze_from": "block_16_expand",  # the last block and Conv_1, as in 04_4
    "images_per_class": 100,
    "val_per_class": 30,
    "test_per_class": 50,
    "views": 4,  # augmented copies of each training image, with the clean one
    "head_steps": 500,
    "head_lr": 1e-3,
    "finetune_steps": 500,
    "finetune_lr": 1e-4,  # Adam, ten times below the head's, as in 04_4
    "check_every": 100,
    "batch_size": 32,
    "augment": {"translation": 0.1, "zoom": [-0.1, 0.3], "contrast": 0.3, "brightness": 0.2},
    "shift": {"zoom_out": [0.2, 0.4], "contrast": 0.5, "brightness": 0.3, "seed": 9},
    "held_out": {"blur_sigma": 1.0, "noise_sigma": 40.0, "crop_fraction": 0.6, "seed": 9},
    "seeds": [0, 1, 2, 3, 4],
}

ARMS = ("without", "with")  # augmentation
PHASES = ("frozen", "unfrozen")
FAMILIES = ("blur", "inverted", "noise", "crop")
#: The test sets every run is scored on, by the name of its accuracy in a row.
TESTS = ("test", "shifted_test", *FAMILIES)


def fashion_augmentation(augment: dict, seed: int | None = None):
    """03_5's augmentation: flip, shift and zoom with black fill, contrast and brightness,
    as one Sequential model on (n, 28, 28, 1) images with values in [0, 255]."""
    import keras

    own = (lambda i: None) if seed is None else (lambda i: seed + i)  # one seed per layer
    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=own(0)),
            keras.layers.RandomTranslation(
                augment["translation"], augment["translation"], fill_mode="constant", seed=own(1)
            ),
            keras.layers.RandomZoom(tuple(augment["zoom"]), fill_mode="constant", seed=own(2)),
            keras.layers.RandomContrast(augment["contrast"], seed=own(3)),
            keras.layers.RandomBrightness(augment["brightness"], value_range=(0, 255), seed=own(4)),
        ],
        name="augmentation",
    )


def as_uint8(images):
    """Float images (n, 28, 28, 1) back to the (n, 28, 28) uint8 pixels of an ImageData."""
    import numpy as np

    return np.clip(np.round(np.asarray(images)[..., 0]), 0, 255).astype("uint8")


def shifted_test(test, shift: dict):
    """03_5's overlapping shift of the test images: 20-40 % smaller, other lighting (fixed seed)."""
    import keras

    from ftutils import data

    layers = keras.Sequential(
        [
            keras.layers.RandomZoom(tuple(shift["zoom_out"]), fill_mode="constant",
                                    seed=shift["seed"]),
            keras.layers.RandomContrast(shift["contrast"], seed=shift["seed"]),
            keras.layers.RandomBrightness(shift["brightness"], value_range=(0, 255),
                                          seed=shift["seed"]),
        ]
    )  # fmt: skip
    images = layers(test.images[..., None].astype("float32"), training=True)
    return data.ImageData(as_uint8(images), test.labels, test.class_names)


def held_out_tests(test, held_out: dict) -> dict:
    """03_5's four shift families the augmentation does not contain, by name."""
    from ftutils import data, shift_families

    images = {
        "blur": shift_families.gaussian_blur(test.images, held_out["blur_sigma"]),
        "inverted": shift_families.invert(test.images),
        "noise": shift_families.gaussian_noise(
            test.images, held_out["noise_sigma"], held_out["seed"]
        ),
        "crop": shift_families.center_crop(test.images, held_out["crop_fraction"]),
    }
    return {family: data.ImageData(images[family], test.labels, test.class_names)
            for family in FAMILIES}  # fmt: skip


def augmented_pool(train, augment: dict, views: int, seed: int):
    """The clean training images followed by ``views`` augmented copies of them (seeded)."""
    import numpy as np

    from ftutils import data

    layers = fashion_augmentation(augment, seed=1000 + 10 * seed)
    pixels = train.images[..., None].astype("float32")
    copies = [as_uint8(layers(pixels, training=True)) for _ in range(views)]
    return data.ImageData(
        np.concatenate([train.images, *copies]),
        np.tile(train.labels, views + 1),
        train.class_names,
    )


def fit_keep_best(model, x, y, x_val, y_val, steps: int, check_every: int, batch: int, seed: int):
    """Train a compiled model for ``steps`` batches (reshuffled every pass, seeded) and keep
    the weights of its best validation check, one every ``check_every`` steps."""
    import tensorflow as tf

    from ftutils import training

    batches = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        .repeat()
        .batch(batch, drop_remainder=True)
    )
    keep = training.KeepBestAccuracy(x_val, y_val, check_every)
    model.fit(batches, epochs=steps // check_every, steps_per_epoch=check_every, shuffle=False,
              callbacks=[keep], verbose=0)  # fmt: skip
    model.set_weights(keep.weights)
    return keep


class Study:
    """The data, the activations below the cut of every fixed image set, and one seed's
    runs (:meth:`run`)."""

    def __init__(self, params: dict | None = None):
        self.params = json.loads(json.dumps(PARAMS if params is None else params))

    def classifier(self):
        """A new classifier (ImageNet weights, new head) and its cut."""
        from ftutils import frozen, models

        p = self.params
        model = models.build_classifier(p["backbone"], 10, p["image_size"])
        return model, frozen.cut(model, p["unfreeze_from"])

    def prepare(self) -> Study:
        from ftutils import data, frozen

        p = self.params
        train_full, test_full = data.load_fashion_mnist()
        rest, held_out = data.split(train_full, 0.05, seed=0)
        self.train = data.per_class(rest, p["images_per_class"], seed=0)
        self.val = data.per_class(held_out, p["val_per_class"], seed=0)
        self.test = data.per_class(test_full, p["test_per_class"], seed=0)
        tests = {"test": self.test, "shifted_test": shifted_test(self.test, p["shift"]),
                 **held_out_tests(self.test, p["held_out"])}  # fmt: skip
        _, part = self.classifier()
        self.lower = part.lower  # frozen in every run: its outputs are computed once
        self.x_train = frozen.activations(self.lower, self.train)
        self.x_val = frozen.activations(self.lower, self.val)
        self.x_tests = {name: frozen.activations(self.lower, d) for name, d in tests.items()}
        return self

    def training_set(self, augmented: bool, seed: int):
        """The activations and labels an arm trains on."""
        import numpy as np

        from ftutils import frozen

        if not augmented:
            return self.x_train, self.train.labels
        pool = augmented_pool(self.train, self.params["augment"], self.params["views"], seed)
        copies = pool.take(np.arange(len(self.train), len(pool)))
        x_views = frozen.activations(self.lower, copies, use_disk_cache=False)
        return np.concatenate([self.x_train, x_views]), pool.labels

    def run(self, seed: int) -> dict:
        """Both arms for ``seed``: the accuracies of the frozen and the unfrozen phase."""
        from ftutils import backbones, models, training
        from ftutils.config import set_seed

        p = self.params
        started = time.perf_counter()
        row = {"seed": seed}
        for arm in ARMS:
            x, y = self.training_set(arm == "with", seed)
            set_seed(seed)
            model, part = self.classifier()
            base = models.base_of(model)
            result = {"training examples": len(x)}
            for phase in PHASES:
                if phase == "unfrozen":
                    backbones.unfreeze(base, from_layer=p["unfreeze_from"])  # BN kept frozen
                training.compile_classifier(
                    part.upper, "adam", p["head_lr" if phase == "frozen" else "finetune_lr"]
                )
                steps = p["head_steps" if phase == "frozen" else "finetune_steps"]
                keep = fit_keep_best(part.upper, x, y, self.x_val, self.val.labels, steps,
                                     p["check_every"], p["batch_size"], seed)  # fmt: skip
                result[phase] = {
                    "val_accuracy": keep.best,
                    "best_step": keep.best_step,
                    "val_curve": keep.curve,
                    **{
                        f"{name}_accuracy": training.inference_accuracy(
                            part.upper, x_test, self.test.labels
                        )
                        for name, x_test in self.x_tests.items()
                    },
                }
            row[arm] = result
        row["seconds"] = round(time.perf_counter() - started, 1)
        return row


def weights_description(params: dict) -> str:
    """The pretrained weights as the results file records them."""
    from ftutils import backbones

    weights = backbones.imagenet_weights_path(params["backbone"]).name
    return (f"ImageNet {params['backbone']} ({weights}, loaded into a "
            f"{params['image_size']}-px base)")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--seeds", type=int, nargs="+", help="default: the study's seeds")
    parser.add_argument(
        "--params", type=json.loads, default=None, help="JSON of parameters to change"
    )
    args = parser.parse_args(argv)

    import ftutils
    from ftutils import studies

    ftutils.setup(seed=0, verbose=False)
    start = time.perf_counter()
    study = Study({**PARAMS, **(args.params or {})}).prepare()
    p = study.params
    command = shlex.join(["python", "scripts/augment_finetune_study.py", *argv])
    made = studies.record(command, p, weights_description(p))
    results = studies.ResultsFile(args.out, made, key=("seed",))
    seeds = args.seeds or p["seeds"]
    for seed in seeds:
        if results.has(seed=seed):
            continue
        row = study.run(seed)
        results.save(row)
        scores = " ".join(
            f"{arm}/{phase}: clean {row[arm][phase]['test_accuracy']:.3f} "
            f"shifted {row[arm][phase]['shifted_test_accuracy']:.3f}"
            for arm in ARMS
            for phase in PHASES
        )
        print(f"seed {seed}: {scores} ({row['seconds']:.0f} s)", flush=True)
    print(f"{len(seeds)} seeds in {time.perf_counter() - start:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
