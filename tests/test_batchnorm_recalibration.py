"""ftutils.transfer.recalibrate_batchnorm: BN statistics after a short pretraining (§4.3)."""

import keras
import numpy as np
import pytest

from ftutils import data, models, transfer

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
    assert transfer.recalibrate_batchnorm(model, train, batch_size=16) == 52
    np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean(batch_means, axis=0), atol=1e-4)
    assert bn.momentum == momentum and bn.trainable is False  # restored


def test_models_without_batchnorm_are_left_alone():
    model = models.build_classifier("vgg16", 2, 32, weights=None)
    assert transfer.recalibrate_batchnorm(model, _images()) == 0
