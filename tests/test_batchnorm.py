"""ftutils.batchnorm: recalibration after a short pretraining, and measuring BN (§4.3)."""

import keras
import numpy as np
import pytest

from ftutils import batchnorm, data, models

pytestmark = pytest.mark.usefixtures("float32_policy")  # identities in float32


def _images(n=40, size=32, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8)
    return data.ImageData(images, np.arange(n) % 2, ("a", "b"))


def test_moving_statistics_become_the_average_of_batch_statistics():
    model = models.build_classifier("mobilenet_v2", 2, 32, weights=None)
    base = models.base_of(model)
    bn = base.get_layer("bn_Conv1")
    bn.trainable = False  # frozen, as after build_classifier: must be updated anyway
    momentum = bn.momentum
    train = _images()
    probe = keras.Model(model.input, model.get_layer("preprocess").output)
    first_conv = base.get_layer("Conv1")
    batch_means = [
        np.mean(first_conv(probe(x)).numpy(), axis=(0, 1, 2))
        for x, _ in data.make_dataset(train, 32, 16)
    ]
    assert batchnorm.recalibrate(model, train, batch_size=16) == 52
    np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean(batch_means, axis=0), atol=1e-4)
    assert bn.momentum == momentum and bn.trainable is False  # restored


def test_models_without_batchnorm_are_left_alone():
    model = models.build_classifier("vgg16", 2, 32, weights=None)
    assert batchnorm.recalibrate(model, _images()) == 0


def test_batchnorm_drift_and_training_mode_gap():
    inputs = keras.Input((4, 4, 2))
    outputs = keras.layers.BatchNormalization()(keras.layers.Conv2D(3, 1)(inputs))
    model = keras.Model(inputs, outputs)
    images = np.random.default_rng(0).normal(5, 2, (8, 4, 4, 2)).astype("float32")
    before = batchnorm.statistics(model)
    assert batchnorm.training_mode_gap(model, images) > 0.1  # batch vs moving statistics
    assert batchnorm.drift(before, batchnorm.statistics(model)) == 0
    model.layers[-1].trainable = False  # a frozen BN always uses its moving statistics
    assert batchnorm.training_mode_gap(model, images) == 0.0
    model.layers[-1].moving_mean.assign(np.ones(3))
    assert batchnorm.drift(before, batchnorm.statistics(model)) > 0
    with pytest.raises(ValueError, match="same model"):
        batchnorm.drift(before, {})
