"""Benchmark: the fast path (cached activations) and the book's recipe vs the TF tutorial's.

Prints, in one run, on the default task (Fashion-MNIST, MobileNetV2 ImageNet weights):

(a) seconds per epoch of head training through the frozen base vs on cached features
    (extraction shown apart), and their ratio;
(b) the default task -- 100 labelled images per class (80 train / 20 validation), the same
    2,000 test images, seeds 0-2 -- for the book's recipe as notebook 01 runs it, the
    multi-depth-features recipe, and the TensorFlow tutorial's recipe
    (``bench/tutorial_recipe.py``): mean test accuracy, spread, training seconds, ratios;
(c) seconds per epoch of fine-tuning the top blocks on cached activations below the cut vs
    through the whole network.

Every timed epoch comes after one untimed epoch (graph tracing). Run with ``make bench``
(KERAS_HOME must hold the MobileNetV2 weights and Fashion-MNIST); about 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import ftutils
from ftutils import backbones, data, features, models, partial, training

CUT = "block_13_expand"  # notebook 01's first unfrozen layer
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
    through = per_epoch(lambda n: training.fit(model, train, val, n, verbose=0), epochs)
    model = models.build_classifier("mobilenet_v2", 10, size)
    (x_train, x_val), extraction = timed(
        lambda: [features.extract_features(model, d, use_disk_cache=False) for d in (train, val)]
    )
    head = models.build_head(x_train.shape[1], 10)
    training.compile_classifier(head)
    fit = lambda n: head.fit(  # noqa: E731
        x_train, train.labels, validation_data=(x_val, val.labels), epochs=n, verbose=0
    )
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
    through = per_epoch(lambda n: training.fit(model, train, val, n, verbose=0), epochs)
    split = partial.split_classifier(model, CUT)
    acts, extraction = timed(partial.activations, split.lower, train)
    training.compile_classifier(split.upper, "adam", 1e-4)
    steps = -(-len(train) // 32)
    cached = per_epoch(lambda n: partial.fit_steps(split.upper, acts, train.labels, n * steps), 2)
    print(f"(c) top blocks from {CUT} fine-tuned, {len(train)} images at {size} px")
    print(f"    through the whole network:    {through:7.3f} s/epoch")
    ratio = through / cached
    print(f"    on activations below the cut: {cached:7.3f} s/epoch   ratio {ratio:5.1f}x")
    print(f"    activations, once:            {extraction:7.1f} s\n")


def book_recipe(train, val, size: int) -> object:
    """Notebook 01's recipe: cached-feature head, then the top blocks at lr 1e-4."""
    model = models.build_classifier("mobilenet_v2", 10, size)
    x_train, x_val = (
        features.extract_features(model, d, use_disk_cache=False) for d in (train, val)
    )
    head, _ = features.train_head(x_train, train, x_val, val, epochs=20)
    models.copy_head(head, model)
    training.two_phase_finetune(
        model, train, val, head_epochs=0, finetune_epochs=5, unfreeze_from=CUT, patience=2,
        verbose=0,
    )  # fmt: skip
    return lambda test: training.accuracy(model, test)


def multi_depth_recipe(train, val, size: int, backbones_used=("mobilenet_v2",), heads=1):
    """Features from several depths of frozen bases, standardized; ``heads`` dense heads
    from different initialisations, their probabilities averaged."""
    parts = {"train": [], "val": [], "model": []}
    for backbone in backbones_used:
        model = models.build_classifier(backbone, 10, size)
        layers = features.MULTI_DEPTH_LAYERS[backbone]
        for name, d in (("train", train), ("val", val)):
            parts[name].append(
                features.extract_features(model, d, use_disk_cache=False, layers=layers)
            )
        parts["model"].append((model, layers))
    x_train, x_val = (np.concatenate(parts[name], axis=1) for name in ("train", "val"))
    trained = []
    for k in range(heads):
        ftutils.config.set_seed(1000 + k)
        trained.append(
            features.train_head(
                x_train, train, x_val, val, epochs=300, standardize=True, patience=15
            )[0]
        )

    def accuracy(test):
        x_test = np.concatenate(
            [
                features.extract_features(model, test, use_disk_cache=False, layers=layers)
                for model, layers in parts["model"]
            ],
            axis=1,
        )
        probabilities = np.mean([head.predict(x_test, verbose=0) for head in trained], axis=0)
        return float(np.mean(probabilities.argmax(1) == test.labels))

    return accuracy


def two_backbone_recipe(train, val, size: int):
    """Multi-depth features of MobileNetV2 and MobileNet, five heads averaged."""
    return multi_depth_recipe(train, val, size, ("mobilenet_v2", "mobilenet"), heads=5)


def tutorial_recipe(train, val, size: int) -> object:
    import tutorial_recipe

    model, base = tutorial_recipe.build(10, size, seed=0)
    tutorial_recipe.train(model, base, train, val, size)
    return lambda test: training.accuracy(model, test)


def recipes(train_all, test, sizes: dict[str, int]) -> None:
    """(b) the recipes on the default task, three seeds each."""
    runs = {
        "book (notebook 01)": book_recipe,
        "multi-depth features": multi_depth_recipe,
        "2 bases x depths x 5 heads": two_backbone_recipe,
        "TF tutorial": tutorial_recipe,
    }
    runs = {name: recipe for name, recipe in runs.items() if name in sizes}
    rows = {}
    for name, recipe in runs.items():
        accuracies, seconds = [], []
        for seed in SEEDS:
            ftutils.config.set_seed(seed)
            train, val = data.split(data.per_class(train_all, 100, seed=seed), 0.2, seed=seed)
            accuracy, took = timed(recipe, train, val, sizes[name])
            accuracies.append(accuracy(test))
            seconds.append(took)
        rows[name] = (np.mean(accuracies), np.ptp(accuracies), np.mean(seconds), sizes[name])
        print(f"    {name}: accuracies {np.round(accuracies, 3).tolist()}", flush=True)
    tutorial = rows.get("TF tutorial", (np.nan, 0, np.nan, 0))
    print("(b) default task: 100 labelled images per class, 2,000 test images, seeds 0-2")
    header = f"{'recipe':<28}{'px':>5}{'accuracy':>10}{'spread':>8}{'train s':>9}"
    print(f"    {header}   vs tutorial")
    for name, (mean, spread, secs, size) in rows.items():
        ratio = f"{mean - tutorial[0]:+.3f} acc, {secs / tutorial[2]:.2f}x time"
        print(f"    {name:<28}{size:>5}{mean:>10.3f}{spread:>8.3f}{secs:>9.1f}   {ratio}")


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
        head_training(train, val, 96, args.epochs)
        top_blocks(train, val, 96, args.epochs)
    if not args.skip_recipes:
        test = data.per_class(test_all, 200, seed=0)
        sizes = {
            "book (notebook 01)": 96,
            "multi-depth features": 128,
            "2 bases x depths x 5 heads": 128,
            "TF tutorial": 96,
        }
        chosen = args.recipes.split(",") if args.recipes else list(sizes)
        recipes(train_all, test, {name: sizes[name] for name in chosen})


if __name__ == "__main__":
    main()
