"""Data augmentation as Keras preprocessing layers inside the model (§3.5).

Inside the model, augmentation runs only when ``training=True`` and is the identity at
inference, and every epoch sees freshly transformed images (which is why augmented training
cannot reuse cached features).
"""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="ftutils")
class RandomCropResize(keras.layers.Layer):
    """Crop a random square window and resize it back to the input size, in training only.

    The window's side is drawn uniformly from ``1 - fraction`` to 1 times the image side, its
    position uniformly inside the image; each image in a batch gets its own window. At
    inference the layer returns its input unchanged. (``keras.layers.RandomCrop`` instead
    returns a smaller image, and at inference resizes the whole image to that smaller size,
    so it cannot sit in front of a base that expects a fixed input size.)
    """

    def __init__(self, fraction: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not 0 < fraction < 1:
            raise ValueError(
                f"crop fraction must be between 0 and 1 (exclusive), got {fraction}; e.g. 0.2 "
                "crops windows of 80-100% of the image side"
            )
        self.fraction = fraction
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training:
            return images
        batch = tf.shape(images)[0]
        height, width = images.shape[1], images.shape[2]
        side = keras.random.uniform((batch,), 1 - self.fraction, 1.0, seed=self.seed_generator)
        top = keras.random.uniform((batch,), seed=self.seed_generator) * (1 - side)
        left = keras.random.uniform((batch,), seed=self.seed_generator) * (1 - side)
        boxes = tf.stack([top, left, top + side, left + side], axis=1)
        crops = tf.image.crop_and_resize(
            tf.cast(images, "float32"), boxes, tf.range(batch), (height, width)
        )
        return tf.cast(crops, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "fraction": self.fraction, "seed": self.seed}


#: Every transform :func:`transforms` knows, in the order they are applied.
TRANSFORMS = ("crop", "flip", "rotation", "zoom", "translation", "contrast", "brightness")


def transforms(
    flip: bool = True,
    rotation: float = 0.05,
    zoom: float = 0.1,
    translation: float = 0.1,
    contrast: float = 0.1,
    seed: int | None = None,
    *,
    crop: float = 0.0,
    brightness: float = 0.0,
) -> dict[str, keras.Layer]:
    """The individual random layers of :func:`augmentation`, by name, in the order applied.

    Useful to look at one transform at a time (``ftutils.plots.plot_augmentation_grid``).
    With a ``seed``, each transform gets its own, ``seed`` + its index in ``TRANSFORMS``: layers
    seeded alike would draw the same random numbers, so e.g. zoom and shift would move together.
    """

    def own(name: str) -> int | None:
        return None if seed is None else seed + TRANSFORMS.index(name)

    layers: dict[str, keras.Layer] = {}
    if crop:
        layers["crop"] = RandomCropResize(crop, seed=own("crop"), name="random_crop_resize")
    if flip:
        layers["flip"] = keras.layers.RandomFlip("horizontal", seed=own("flip"))
    if rotation:
        layers["rotation"] = keras.layers.RandomRotation(
            rotation, fill_mode="reflect", seed=own("rotation")
        )
    if zoom:
        layers["zoom"] = keras.layers.RandomZoom(zoom, fill_mode="reflect", seed=own("zoom"))
    if translation:
        layers["translation"] = keras.layers.RandomTranslation(
            translation, translation, fill_mode="reflect", seed=own("translation")
        )
    if contrast:
        layers["contrast"] = keras.layers.RandomContrast(contrast, seed=own("contrast"))
    if brightness:
        layers["brightness"] = keras.layers.RandomBrightness(
            brightness, value_range=(0, 255), seed=own("brightness")
        )
    return layers


def augmentation(
    flip: bool = True,
    rotation: float = 0.05,
    zoom: float = 0.1,
    translation: float = 0.1,
    contrast: float = 0.1,
    seed: int | None = None,
    *,
    crop: float = 0.0,
    brightness: float = 0.0,
) -> keras.Sequential:
    """A stack of random crop / flip / rotation / zoom / translation / contrast / brightness layers.

    Set a factor to 0 (or ``flip=False``) to leave that transform out; crop and brightness are
    off by default. ``rotation`` is a fraction of a full turn, ``zoom``, ``translation`` and
    ``crop`` fractions of the image size, ``brightness`` a fraction of the [0, 255] range.
    """
    layers = transforms(
        flip, rotation, zoom, translation, contrast, seed, crop=crop, brightness=brightness
    )
    return keras.Sequential(list(layers.values()), name="augmentation")
