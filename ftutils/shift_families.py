"""Test-time shifts of a whole test set, for robustness to transforms a training never saw.

Each function takes a stack of uint8 images, ``(n, height, width)`` or
``(n, height, width, channels)``, and returns a shifted copy of the same shape and dtype.
They are deterministic (the noise is seeded), so a shifted test set is the same on every run.
§3.5 uses them as shift families that its augmentation does not contain.
"""

from __future__ import annotations

import numpy as np


def _as_uint8(images: np.ndarray) -> np.ndarray:
    return np.clip(np.round(images), 0, 255).astype("uint8")


def _check(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise ValueError(
            f"expected uint8 images of shape (n, h, w) or (n, h, w, c), got {images.dtype} "
            f"{images.shape}"
        )
    return images


def gaussian_blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Each image blurred by a Gaussian of ``sigma`` pixels (separable, zero outside the image,
    as the black background of Fashion-MNIST)."""
    images = _check(images)
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    radius = int(np.ceil(3 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    out = images.astype("float64")
    for axis in (1, 2):
        out = np.apply_along_axis(lambda row: np.convolve(row, kernel, mode="same"), axis, out)
    return _as_uint8(out)


def invert(images: np.ndarray) -> np.ndarray:
    """Inverted contrast: dark becomes light (255 - value)."""
    return 255 - _check(images)


def gaussian_noise(images: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """Independent Gaussian noise of ``sigma`` (on the 0-255 scale) added to every pixel."""
    images = _check(images)
    rng = np.random.default_rng(seed)
    return _as_uint8(images + rng.normal(0.0, sigma, images.shape))


def center_crop(images: np.ndarray, fraction: float) -> np.ndarray:
    """The central ``fraction`` of each side, enlarged back to the full size (a zoom in)."""
    import tensorflow as tf

    images = _check(images)
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    height, width = images.shape[1:3]
    stacked = images if images.ndim == 4 else images[..., None]
    cropped = tf.image.central_crop(stacked.astype("float32"), fraction)
    resized = tf.image.resize(cropped, (height, width), method="bilinear").numpy()
    return _as_uint8(resized if images.ndim == 4 else resized[..., 0])
