"""§3.1 损失函数: squared error, cross-entropy, Huber and the L2 penalty, written from scratch.

Each function follows the formula and the reduction of its ``keras.losses`` /
``keras.regularizers`` counterpart (one value per example, the mean taken over the last
axis where Keras takes it), so the tests can compare them number for number. They are
written with TensorFlow ops so that ``tf.GradientTape`` can differentiate them, and accept
NumPy arrays too.

The gradients with respect to the logits, :func:`cross_entropy_logit_gradient` and
:func:`squared_error_logit_gradient`, show why squared error on a softmax learns slowly from
a confidently wrong prediction: its gradient carries the softmax Jacobian, which vanishes
there, while cross-entropy's gradient ``p - y`` does not (Golik, Doetsch & Ney, "Cross-entropy
vs. squared error training", Interspeech 2013).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

#: Keras' default fuzz factor (``keras.config.epsilon()``), used to clip probabilities.
EPSILON = 1e-7

TensorLike = tf.Tensor | np.ndarray


def _pair(y_true: TensorLike, y_pred: TensorLike) -> tuple[tf.Tensor, tf.Tensor]:
    y_pred = tf.convert_to_tensor(y_pred, dtype=tf.float32)
    y_true = tf.cast(tf.convert_to_tensor(y_true), y_pred.dtype)
    if not y_true.shape.is_compatible_with(y_pred.shape):
        raise ValueError(
            f"y_true has shape {y_true.shape} but y_pred has shape {y_pred.shape}; pass one-hot "
            "targets (e.g. keras.ops.one_hot(labels, n_classes)) of the prediction's shape"
        )
    return y_true, y_pred


def softmax(logits: TensorLike) -> tf.Tensor:
    """``exp(z_k) / sum_j exp(z_j)`` over the last axis, shifted by the max for stability."""
    z = tf.convert_to_tensor(logits, dtype=tf.float32)
    e = tf.exp(z - tf.reduce_max(z, axis=-1, keepdims=True))
    return e / tf.reduce_sum(e, axis=-1, keepdims=True)


def squared_error(y_true: TensorLike, y_pred: TensorLike) -> tf.Tensor:
    """平方差损失: ``mean_k (y_pred_k - y_true_k)^2`` per example, like ``mean_squared_error``."""
    y_true, y_pred = _pair(y_true, y_pred)
    return tf.reduce_mean(tf.square(y_pred - y_true), axis=-1)


def cross_entropy(y_true: TensorLike, y_pred: TensorLike) -> tf.Tensor:
    """交叉熵损失: ``-sum_k y_true_k log p_k`` per example, from probabilities.

    Like ``keras.losses.categorical_crossentropy``, the probabilities are renormalised to sum
    to 1 and clipped to ``[EPSILON, 1 - EPSILON]`` so that ``log`` stays finite.
    """
    y_true, y_pred = _pair(y_true, y_pred)
    p = y_pred / tf.reduce_sum(y_pred, axis=-1, keepdims=True)
    p = tf.clip_by_value(p, EPSILON, 1.0 - EPSILON)
    return -tf.reduce_sum(y_true * tf.math.log(p), axis=-1)


def cross_entropy_from_logits(y_true: TensorLike, logits: TensorLike) -> tf.Tensor:
    """Cross-entropy of ``softmax(logits)``: ``-sum_k y_k (z_k - logsumexp(z))``, no clipping."""
    y_true, z = _pair(y_true, logits)
    z_max = tf.reduce_max(z, axis=-1, keepdims=True)
    log_sum_exp = z_max + tf.math.log(tf.reduce_sum(tf.exp(z - z_max), axis=-1, keepdims=True))
    return -tf.reduce_sum(y_true * (z - log_sum_exp), axis=-1)


def huber(y_true: TensorLike, y_pred: TensorLike, delta: float = 1.0) -> tf.Tensor:
    """Huber损失: ``e^2 / 2`` for ``|e| <= delta``, ``delta (|e| - delta / 2)`` beyond; mean over k.

    Quadratic near zero, linear in the tails, so a large error pulls with a bounded gradient
    (Huber, "Robust estimation of a location parameter", 1964). Same as ``keras.losses.huber``.
    """
    if delta <= 0:
        raise ValueError(f"Huber's delta must be positive, got {delta}")
    y_true, y_pred = _pair(y_true, y_pred)
    error = tf.abs(y_pred - y_true)
    quadratic = 0.5 * tf.square(error)
    linear = delta * error - 0.5 * delta**2
    return tf.reduce_mean(tf.where(error <= delta, quadratic, linear), axis=-1)


def l2_penalty(weights: TensorLike, l2: float) -> tf.Tensor:
    """正则化项: ``l2 * sum(w^2)``, what ``keras.regularizers.L2(l2)`` adds to the loss."""
    if l2 < 0:
        raise ValueError(f"the L2 strength must be >= 0, got {l2}")
    return l2 * tf.reduce_sum(tf.square(tf.convert_to_tensor(weights, dtype=tf.float32)))


def cross_entropy_logit_gradient(y_true: TensorLike, logits: TensorLike) -> tf.Tensor:
    """d cross_entropy(y, softmax(z)) / dz = ``softmax(z) - y``: never small while p is wrong."""
    y_true, z = _pair(y_true, logits)
    return softmax(z) - y_true


def squared_error_logit_gradient(y_true: TensorLike, logits: TensorLike) -> tf.Tensor:
    """d squared_error(y, softmax(z)) / dz = ``J^T (2 / K) (p - y)``, ``J = diag(p) - p p^T``.

    The softmax Jacobian ``J`` goes to zero as ``p`` saturates, whether the prediction is
    right or confidently wrong: squared error then barely moves the logits.
    """
    y_true, z = _pair(y_true, logits)
    p = softmax(z)
    r = 2.0 / tf.cast(tf.shape(z)[-1], z.dtype) * (p - y_true)  # dL/dp
    return p * (r - tf.reduce_sum(p * r, axis=-1, keepdims=True))  # J^T r, J symmetric
