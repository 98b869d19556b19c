"""Inverted dropout from scratch (§3.4) against keras.layers.Dropout."""

import keras
import numpy as np
import pytest

from ftutils.scratch import dropout

pytestmark = pytest.mark.usefixtures("float32_policy")  # identities in float32


def _activations(shape=(400, 500), seed=0):
    """Strictly positive activations (σ outputs), so a zero in Keras' output marks a drop."""
    rng = np.random.default_rng(seed)
    return dropout.sigmoid(rng.normal(size=shape)).astype("float32")


@pytest.mark.parametrize("rate", [0.3, 0.5])
def test_scratch_with_keras_mask_reproduces_keras_exactly(rate):
    a = _activations()
    keras_out = np.asarray(keras.layers.Dropout(rate, seed=1)(a, training=True))
    mask = (keras_out != 0).astype("float32")
    ours = dropout.inverted_dropout(a, 1 - rate, training=True, mask=mask)
    np.testing.assert_array_equal(ours, keras_out)
    # kept units are scaled by 1 / (1 - rate), dropped units are exactly 0
    kept = mask == 1
    np.testing.assert_allclose(keras_out[kept], a[kept] / (1 - rate), rtol=1e-6)
    assert np.all(keras_out[~kept] == 0)


@pytest.mark.parametrize("rate", [0.2, 0.5, 0.8])
def test_training_statistics_match_keras(rate):
    a = _activations()
    n = a.size
    keras_out = np.asarray(keras.layers.Dropout(rate, seed=2)(a, training=True))
    ours = dropout.inverted_dropout(a, 1 - rate, True, rng=np.random.default_rng(3))
    tolerance = 5 * np.sqrt(rate * (1 - rate) / n)  # 5 binomial standard errors
    for out in (keras_out, ours):
        assert abs(np.mean(out == 0) - rate) < tolerance
        # unbiased: the mean activation is preserved (inverted scaling)
        assert abs(out.mean() - a.mean()) < 0.01 * a.mean()
    assert abs(keras_out.var() - ours.var()) < 0.02 * keras_out.var()


def test_inference_is_the_identity_for_both():
    a = _activations((64, 32))
    np.testing.assert_array_equal(dropout.inverted_dropout(a, 0.5, training=False), a)
    np.testing.assert_array_equal(np.asarray(keras.layers.Dropout(0.5)(a, training=False)), a)


def test_mask_is_bernoulli_and_seeded():
    z = dropout.bernoulli_mask((1000, 100), 0.7, np.random.default_rng(0))
    assert set(np.unique(z).tolist()) == {0.0, 1.0}
    assert abs(z.mean() - 0.7) < 0.01
    again = dropout.bernoulli_mask((1000, 100), 0.7, np.random.default_rng(0))
    np.testing.assert_array_equal(z, again)


def test_dense_sigmoid_dropout_matches_keras_dense_plus_dropout():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 20)).astype("float32")
    inputs = keras.Input((20,))
    dense = keras.layers.Dense(50, activation="sigmoid")
    drop = keras.layers.Dropout(0.4, seed=5)
    model = keras.Model(inputs, drop(dense(inputs)))
    w, b = dense.get_weights()
    at_inference = np.asarray(model(x, training=False))
    np.testing.assert_allclose(
        dropout.dense_sigmoid_dropout(x, w, b, 0.6, False), at_inference, rtol=1e-5
    )
    in_training = np.asarray(model(x, training=True))
    mask = (in_training != 0).astype("float32")
    ours = dropout.dense_sigmoid_dropout(x, w, b, 0.6, True, mask=mask)
    np.testing.assert_allclose(ours, in_training, rtol=1e-5)
    assert 0.3 < 1 - mask.mean() < 0.5


@pytest.mark.parametrize("keep_prob", [0.0, -0.1, 1.5])
def test_bad_keep_prob_names_the_valid_range(keep_prob):
    with pytest.raises(ValueError, match=r"keep_prob must be in \(0, 1\]"):
        dropout.inverted_dropout(np.ones(3), keep_prob, training=True, rng=np.random.default_rng())


def test_training_without_mask_or_rng_is_an_error():
    with pytest.raises(ValueError, match="give a mask or a random generator"):
        dropout.inverted_dropout(np.ones(3), 0.5, training=True)
