"""Source domain -> target domain without ImageNet (§2.2 源域/目标域, §4.1-§4.3).

When a backbone's ImageNet weights are not at hand (offline, or AlexNet, which
``keras.applications`` does not ship), the book pretrains the same architecture itself on a
*source* split of Fashion-MNIST (classes 0-4) and fine-tunes it on the *target* split
(classes 5-9): the same two domains as ImageNet -> Fashion-MNIST, on a laptop scale.
"""

from __future__ import annotations

from pathlib import Path

import keras

from ftutils import backbones, batchnorm, cache, data, models
from ftutils.config import CACHE_DIR, seeded
from ftutils.errors import WeightsUnavailableError
from ftutils.experiments import config_key
from ftutils.training import TrainingRecord, compile_classifier, fit_classifier

SOURCE_CLASSES = (0, 1, 2, 3, 4)  # T-shirt/top, Trouser, Pullover, Dress, Coat
TARGET_CLASSES = (5, 6, 7, 8, 9)  # Sandal, Shirt, Sneaker, Bag, Ankle boot


def train_from_scratch(
    model: keras.Model,
    train: data.ImageData,
    val: data.ImageData,
    epochs: int,
    learning_rate: float = 1e-3,
    **fit_kwargs,
) -> TrainingRecord:
    """Train every layer of a classifier, BatchNormalization included (nothing to protect)."""
    models.base_of(model).trainable = True
    compile_classifier(model, "adam", learning_rate)
    return fit_classifier(model, train, val, epochs, phase="scratch", **fit_kwargs)


def source_weights_path(
    backbone: str,
    image_size: int,
    per_class: int = 300,
    epochs: int = 5,
    learning_rate: float = 1e-3,
    seed: int = 0,
) -> Path:
    """Where :func:`source_pretrained_weights` keeps the weights of this configuration."""
    config = {
        "backbone": backbone,
        "image_size": image_size,
        "per_class": per_class,
        "epochs": epochs,
        "learning_rate": learning_rate,
        "seed": seed,
        "classes": SOURCE_CLASSES,
        "batchnorm": "recalibrated",
    }
    return CACHE_DIR / "pretrained" / f"{backbone}-{config_key('source', config)}.weights.h5"


def source_pretrained_weights(
    backbone: str,
    image_size: int,
    per_class: int = 300,
    epochs: int = 5,
    learning_rate: float = 1e-3,
    seed: int = 0,
    verbose: int = 2,
) -> Path:
    """Pretrain ``backbone`` from random weights on the source split; return its base weights.

    The weights file is cached under the full configuration (:func:`source_weights_path`), so
    notebooks that share a configuration pretrain once. The pretraining draws its numbers
    inside :func:`ftutils.config.seeded`, so the caller's generators are left where they were:
    what follows draws the same numbers, cached or not.
    """
    path = source_weights_path(backbone, image_size, per_class, epochs, learning_rate, seed)
    if not path.is_file():
        source, _ = data.load_fashion_mnist(list(SOURCE_CLASSES))
        train, val = data.split(data.per_class(source, per_class, seed), 0.2, seed)
        with seeded(seed):  # the weights do not depend on what ran before the call
            model = models.build_classifier(backbone, len(SOURCE_CLASSES), image_size, weights=None)
            train_from_scratch(model, train, val, epochs, learning_rate, seed=seed, verbose=verbose)
            batchnorm.recalibrate(model, train)
        cache.write_atomically(path, models.base_of(model).save_weights)
    return path


def pretrained_weights(backbone: str, image_size: int, **source_kwargs) -> tuple[str | Path, str]:
    """ImageNet weights when they can be had, else source-split pretraining.

    Returns ``(weights, description)``: pass ``weights`` to ``build_classifier`` and print
    ``description`` so the reader knows which one ran.
    """
    try:
        backbones.imagenet_weights_path(backbone)
        return "imagenet", f"{backbone}: ImageNet weights (keras.applications)"
    except WeightsUnavailableError:
        path = source_pretrained_weights(backbone, image_size, **source_kwargs)
        return path, (
            f"{backbone}: no ImageNet weights offline, so pretrained here from random weights "
            f"on Fashion-MNIST classes {SOURCE_CLASSES} (the source split)"
        )
