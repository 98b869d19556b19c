"""Inverted dropout from scratch (§3.4), checked against ``keras.layers.Dropout``.

The article writes ``z_i ~ Bernoulli(keep_prob)`` and ``a_i = σ(W_i x + b_i) / keep_prob`` but
never multiplies by the mask ``z_i``: as written, no unit is ever dropped. Inverted dropout,
what Keras implements, is

    training:   a_i = z_i · σ(W_i x + b_i) / keep_prob,   z_i ~ Bernoulli(keep_prob)
    inference:  a_i = σ(W_i x + b_i)

with ``keep_prob`` fixed for the whole training run. Dividing by ``keep_prob`` during training
keeps every unit's expected value unchanged, so nothing needs rescaling at inference.
Srivastava et al. (2014), "Dropout: A Simple Way to Prevent Neural Networks from Overfitting",
JMLR 15, describe the original form, which instead multiplies the weights by ``p`` at test time.
Keras' ``rate`` is ``1 - keep_prob``.
"""

from __future__ import annotations

import numpy as np


def check_keep_prob(keep_prob: float) -> None:
    """keep_prob is a probability of keeping a unit: 0 < keep_prob <= 1."""
    if not 0 < keep_prob <= 1:
        raise ValueError(
            f"keep_prob must be in (0, 1], got {keep_prob}; it is the probability of keeping a "
            "unit (Keras' Dropout(rate) has keep_prob = 1 - rate)"
        )


def bernoulli_mask(
    shape: tuple[int, ...], keep_prob: float, rng: np.random.Generator
) -> np.ndarray:
    """The mask ``z``: each entry independently 1 (keep) with probability ``keep_prob``, else 0."""
    check_keep_prob(keep_prob)
    return (rng.random(shape) < keep_prob).astype("float32")


def inverted_dropout(
    a: np.ndarray,
    keep_prob: float,
    training: bool,
    mask: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """``z · a / keep_prob`` in training, ``a`` unchanged at inference.

    ``mask`` gives ``z`` explicitly (e.g. the one Keras drew); otherwise it is drawn from
    ``rng``. Like TensorFlow, kept units are multiplied by ``1 / keep_prob`` rounded to the
    array's dtype, which can differ from dividing by ``keep_prob`` in the last bit.
    """
    check_keep_prob(keep_prob)
    a = np.asarray(a)
    if not training:
        return a
    if mask is None:
        if rng is None:
            raise ValueError("give a mask or a random generator rng (np.random.default_rng(seed))")
        mask = bernoulli_mask(a.shape, keep_prob, rng)
    if np.shape(mask) != a.shape:
        raise ValueError(f"mask shape {np.shape(mask)} does not match activations {a.shape}")
    scale = np.asarray(1.0 / keep_prob, dtype=a.dtype)
    return np.where(np.asarray(mask) != 0, a * scale, np.zeros((), a.dtype))


def sigmoid(x: np.ndarray) -> np.ndarray:
    """σ(x) = 1 / (1 + exp(-x))."""
    return 1.0 / (1.0 + np.exp(-x))


def dense_sigmoid_dropout(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray,
    keep_prob: float,
    training: bool,
    mask: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """The article's layer with the mask put back: ``z · σ(x W + b) / keep_prob`` (training).

    ``x`` is ``(batch, inputs)``, ``w`` ``(inputs, units)``, ``b`` ``(units,)``. At inference
    it is the plain layer ``σ(x W + b)``.
    """
    a = sigmoid(np.asarray(x) @ np.asarray(w) + np.asarray(b)).astype(np.result_type(x, w))
    return inverted_dropout(a, keep_prob, training, mask, rng)
