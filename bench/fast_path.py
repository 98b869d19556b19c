"""Benchmark: the fast path (cached activations) and the book's recipe vs the TF tutorial's.

Prints, in one run, on the default task (Fashion-MNIST, MobileNetV2 ImageNet weights):

(a) seconds per epoch of head training through the frozen base vs on cached features
    (extraction shown apart), and their ratio;
(b) the default task -- 100 labelled images per class (80 train / 20 validation), the same
    2,000 test images, seeds 0-2 -- for the two-phase fine-tune (``recipe.fine_tune``),
    multi-depth features of one base, the default recipe (``recipe.feature_ensemble``, what
    notebook 01 uses) and the TensorFlow tutorial's recipe (``bench/tutorial_recipe.py``):
    mean validation and test accuracy, spread, training seconds, and the ratios to the
    tutorial. ``python -m ftutils finetune FOLDER`` (``--recipe auto``, its default) trains
    two of these through ``recipe.auto`` and keeps the one with the higher validation
    accuracy: the default recipe as here, and the two-phase fine-tune at the CLI's own
    settings (128 px as here, from ``block_16_expand``; here from ``block_13_expand``);
(c) seconds per epoch of fine-tuning the top blocks on cached activations below the cut vs
    through the whole network.

Every timed epoch comes after one untimed epoch (graph tracing). Run with ``make bench``
(KERAS_HOME must hold the MobileNetV2 weights and Fashion-MNIST); about 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from unittest import mock

import ftutils  # first: it imports TensorFlow with its start-up notices silenced

# isort: split
import keras
import numpy as np

from ftutils import backbones, data, frozen, models, recipe, training

CUT = "block_13_expand"  # the two-phase fine-tune's first unfrozen layer
SIZE = recipe.ENSEMBLE_IMAGE_SIZE  # the book's default image size (notebook 01)
SEEDS = (0, 1, 2)


def timed(function, *args, **kwargs) -> tuple[object, float]:
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def per_epoch(fit, epochs: int) -> float:
    """Seconds per epoch of ``fit(n)`` (n epochs), after one untimed epoch."""
    fit(1)
    return timed(fit, epochs)[1] / epochs


def head_training(train, val, size: int, epochs: int) -> None:
    """(a) the head alone: through the frozen base vs on cached features."""
    model = models.build_classifier("mobilenet_v2", 10, size)
    training.compile_classifier(model)
    through = per_epoch(lambda n: training.fit_classifier(model, train, val, n, verbose=0), epochs)
    model = models.build_classifier("mobilenet_v2", 10, size)
    (x_train, x_val), extraction = timed(
        lambda: [frozen.extract_features(model, d, use_disk_cache=False) for d in (train, val)]
    )
    head = frozen.cut(model).upper
    training.compile_classifier(head)
    fit = lambda n: frozen.fit_arrays(head, x_train, train.labels, (x_val, val.labels), n)  # noqa: E731
    cached = per_epoch(fit, epochs)
    print(f"(a) head training, {len(train)} images at {size} px, {epochs} timed epochs")
    print(f"    through the frozen base: {through:7.3f} s/epoch")
    print(f"    on cached features:      {cached:7.3f} s/epoch   ratio {through / cached:6.1f}x")
    print(f"    extraction, once:        {extraction:7.1f} s (train + validation images)\n")


def top_blocks(train, val, size: int, epochs: int) -> None:
    """(c) the top blocks fine-tuned: on activations below the cut vs the whole network."""
    model = models.build_classifier("mobilenet_v2", 10, size)
    backbones.unfreeze(models.base_of(model), from_layer=CUT)
    training.compile_classifier(model, "adam", 1e-4)
    through = per_epoch(lambda n: training.fit_classifier(model, train, val, n, verbose=0), epochs)
    part = frozen.cut(model, CUT)
    (acts, acts_val), extraction = timed(
        lambda: [frozen.activations(part.lower, d, use_disk_cache=False) for d in (train, val)]
    )
    training.compile_classifier(part.upper, "adam", 1e-4)
    fit = lambda n: frozen.fit_arrays(part.upper, acts, train.labels, (acts_val, val.labels), n)  # noqa: E731
    cached = per_epoch(fit, epochs)
    print(f"(c) top blocks from {CUT} fine-tuned, {len(train)} images at {size} px")
    print(f"    through the whole network:    {through:7.3f} s/epoch")
    ratio = through / cached
    print(f"    on activations below the cut: {cached:7.3f} s/epoch   ratio {ratio:5.1f}x")
    print(f"    activations, once:            {extraction:7.1f} s (train + validation images)\n")


def book_recipe(train, val, size: int) -> keras.Model:
    """The two-phase fine-tune as notebook 01 runs it: the head on cached features, then the
    top blocks from CUT at lr 1e-4, each phase stopped early on the validation loss."""
    model = models.build_classifier("mobilenet_v2", 10, size)
    recipe.fine_tune(model, train, val, head_epochs=20, finetune_epochs=10, unfreeze_from=CUT)
    return model


def multi_depth_recipe(train, val, size: int) -> keras.Model:
    """Multi-depth features of MobileNetV2 alone, one standardized head."""
    return recipe.feature_ensemble(train, val, ("mobilenet_v2",), size, heads=1)[0]


def ensemble_recipe(train, val, size: int) -> keras.Model:
    """The default recipe: multi-depth features of MobileNetV2 and MobileNet, five heads."""
    return recipe.feature_ensemble(train, val, image_size=size)[0]


def tutorial_recipe(train, val, size: int) -> keras.Model:
    import tutorial_recipe

    model, base = tutorial_recipe.build(10, size, seed=0)
    tutorial_recipe.train(model, base, train, val, size)
    return model


#: (b)'s recipes and their image sizes; the default is the one notebook 01 uses and the CLI
#: tries first.
RECIPES = {
    "two-phase fine-tune": (book_recipe, SIZE),
    "multi-depth, 1 base": (multi_depth_recipe, SIZE),
    "default: 2 bases, 5 heads": (ensemble_recipe, SIZE),
    "TF tutorial": (tutorial_recipe, 96),  # the size the tutorial's recipe was first measured at
}


def recipes(train_all, test, names: list[str]) -> None:
    """(b) the recipes on the default task, three seeds each.

    Validation accuracy (the 200 held-out labelled images, on which a recipe is chosen)
    and test accuracy (2,000 images, used once per seed) are printed side by side. Each
    run starts with an empty feature cache, so its time includes computing its features. Every
    recipe but the tutorial's also stops early on the validation loss, so its validation
    accuracy is slightly optimistic.
    """
    rows = {}
    for name in names:
        recipe_fn, size = RECIPES[name]
        val_accuracies, accuracies, seconds = [], [], []
        for seed in SEEDS:
            ftutils.config.set_seed(seed)
            train, val = data.split(data.per_class(train_all, 100, seed=seed), 0.2, seed=seed)
            with tempfile.TemporaryDirectory() as empty:  # no features from an earlier run
                with mock.patch.object(frozen, "CACHE_DIR", Path(empty)):
                    model, took = timed(recipe_fn, train, val, size)
            val_accuracies.append(training.accuracy(model, val))
            accuracies.append(training.accuracy(model, test))
            seconds.append(took)
        rows[name] = (np.mean(val_accuracies), np.mean(accuracies), np.ptp(accuracies),
                      np.mean(seconds), size)  # fmt: skip
        print(f"    {name}: test accuracies {np.round(accuracies, 3).tolist()}", flush=True)
    tutorial = rows.get("TF tutorial", (np.nan, np.nan, 0, np.nan, 0))
    print("(b) default task: 100 labelled images per class, 2,000 test images, seeds 0-2")
    header = f"{'recipe':<27}{'px':>4}{'val acc':>9}{'test acc':>10}{'spread':>8}{'train s':>9}"
    print(f"    {header}   vs tutorial")
    for name, (val_mean, mean, spread, secs, size) in rows.items():
        ratio = f"{mean - tutorial[1]:+.3f} acc, {secs / tutorial[3]:.2f}x time"
        print(f"    {name:<27}{size:>4}{val_mean:>9.3f}{mean:>10.3f}{spread:>8.3f}{secs:>9.1f}"
              f"   {ratio}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs in (a) and (c)")
    parser.add_argument("--skip-recipes", action="store_true", help="only (a) and (c)")
    parser.add_argument("--only-recipes", action="store_true", help="only (b)")
    parser.add_argument("--recipes", help="comma-separated recipe names for (b) (default: all)")
    args = parser.parse_args()
    ftutils.setup(verbose=False)
    train_all, test_all = data.load_fashion_mnist()
    train, val = data.split(data.per_class(train_all, 100, seed=0), 0.2, seed=0)
    if not args.only_recipes:
        head_training(train, val, SIZE, args.epochs)
        top_blocks(train, val, SIZE, args.epochs)
    if not args.skip_recipes:
        test = data.per_class(test_all, 200, seed=0)
        recipes(train_all, test, args.recipes.split(",") if args.recipes else list(RECIPES))


if __name__ == "__main__":
    main()
