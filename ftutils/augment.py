"""Data augmentation as Keras preprocessing layers inside the model (§3.5).

Inside the model, augmentation runs only when ``training=True`` and is the identity at
inference, and every epoch sees freshly transformed images (which is why augmented training
cannot reuse cached features).
"""

from __future__ import annotations

import keras


def augmentation(
    flip: bool = True,
    rotation: float = 0.05,
    zoom: float = 0.1,
    translation: float = 0.1,
    contrast: float = 0.1,
    seed: int | None = None,
) -> keras.Sequential:
    """A stack of random flip / rotation / zoom / translation / contrast layers.

    Set a factor to 0 (or ``flip=False``) to leave that transform out. ``rotation`` is a
    fraction of a full turn, ``zoom`` and ``translation`` fractions of the image size.
    """
    layers = []
    if flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if rotation:
        layers.append(keras.layers.RandomRotation(rotation, fill_mode="reflect", seed=seed))
    if zoom:
        layers.append(keras.layers.RandomZoom(zoom, fill_mode="reflect", seed=seed))
    if translation:
        layers.append(
            keras.layers.RandomTranslation(translation, translation, fill_mode="reflect", seed=seed)
        )
    if contrast:
        layers.append(keras.layers.RandomContrast(contrast, seed=seed))
    return keras.Sequential(layers, name="augmentation")
