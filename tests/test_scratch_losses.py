"""§3.1: the from-scratch losses equal keras.losses, and their logit gradients equal autodiff."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from ftutils.scratch import losses

RNG = np.random.default_rng(0)
LOGITS = (RNG.normal(size=(16, 10)) * 4).astype("float32")
ONE_HOT = np.eye(10, dtype="float32")[RNG.integers(0, 10, 16)]
PROBS = keras.ops.convert_to_numpy(keras.ops.softmax(LOGITS))


def close(a, b, atol=1e-6):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=atol)


def test_softmax_matches_keras():
    close(losses.softmax(LOGITS), PROBS)
    assert np.isfinite(losses.softmax(np.array([[1000.0, 0.0]], "float32")).numpy()).all()


def test_squared_error_matches_keras():
    close(losses.squared_error(ONE_HOT, PROBS), keras.losses.mean_squared_error(ONE_HOT, PROBS))


def test_cross_entropy_matches_keras_including_clipping():
    probs = PROBS.copy()
    probs[0] = np.eye(10)[(ONE_HOT[0].argmax() + 1) % 10]  # p = 0 on the true class: clipped
    close(
        losses.cross_entropy(ONE_HOT, probs),
        keras.losses.categorical_crossentropy(ONE_HOT, probs),
        atol=1e-5,
    )


def test_cross_entropy_from_logits_matches_keras_and_is_stable():
    expected = keras.losses.categorical_crossentropy(ONE_HOT, LOGITS, from_logits=True)
    close(losses.cross_entropy_from_logits(ONE_HOT, LOGITS), expected, atol=1e-5)
    huge = losses.cross_entropy_from_logits([[0.0, 1.0]], [[500.0, -500.0]])
    close(huge, [1000.0])


@pytest.mark.parametrize("delta", [0.1, 1.0, 2.5])
def test_huber_matches_keras_on_both_sides_of_delta(delta):
    y_true = RNG.normal(size=(32, 5)).astype("float32")
    y_pred = (y_true + RNG.normal(size=(32, 5)) * 3).astype("float32")
    assert (np.abs(y_pred - y_true) > delta).any() and (np.abs(y_pred - y_true) <= delta).any()
    close(losses.huber(y_true, y_pred, delta), keras.losses.huber(y_true, y_pred, delta))


def test_huber_with_delta_one_on_probabilities_is_half_squared_error():
    close(losses.huber(ONE_HOT, PROBS, 1.0), 0.5 * losses.squared_error(ONE_HOT, PROBS))
    assert not np.allclose(
        losses.huber(ONE_HOT, PROBS, 0.1), 0.5 * losses.squared_error(ONE_HOT, PROBS)
    )


def test_l2_penalty_matches_keras_regularizer():
    w = RNG.normal(size=(20, 3)).astype("float32")
    close(losses.l2_penalty(w, 0.01), keras.regularizers.L2(0.01)(w))


@pytest.mark.parametrize(
    "loss, gradient",
    [
        (losses.cross_entropy_from_logits, losses.cross_entropy_logit_gradient),
        (
            lambda y, z: losses.squared_error(y, losses.softmax(z)),
            losses.squared_error_logit_gradient,
        ),
    ],
)
def test_logit_gradients_match_autodiff(loss, gradient):
    z = tf.Variable(LOGITS)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(loss(ONE_HOT, z))
    close(gradient(ONE_HOT, LOGITS), tape.gradient(total, z))


def test_squared_error_gradient_vanishes_when_confidently_wrong():
    y = np.eye(10, dtype="float32")[[0]]
    wrong = np.array([[-8.0] + [0.0] * 9], dtype="float32")  # true class far behind
    ce = np.abs(losses.cross_entropy_logit_gradient(y, wrong).numpy()[0, 0])
    se = np.abs(losses.squared_error_logit_gradient(y, wrong).numpy()[0, 0])
    assert ce > 0.99 and se < 1e-3


def test_bad_input_is_explained():
    with pytest.raises(ValueError, match="one-hot"):
        losses.squared_error(np.array([1, 2]), PROBS[:2])
    with pytest.raises(ValueError, match="delta"):
        losses.huber(ONE_HOT, PROBS, 0.0)
    with pytest.raises(ValueError, match="L2"):
        losses.l2_penalty(np.ones(3), -1.0)
