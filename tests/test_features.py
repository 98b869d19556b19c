"""Cached features (§2.2, §4.4): memoised extractors, multi-depth features, standardized heads."""

import keras
import numpy as np
import pytest

from ftutils import features, models
from ftutils.data import ImageData
from ftutils.errors import BackboneError

SIZE = 32
LAYERS = ("block_6_expand_relu", "out_relu")


def _images(n=6):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, SIZE, SIZE, 3), dtype="uint8")
    return ImageData(images, np.arange(n) % 2, ("a", "b"))


@pytest.fixture(scope="module")
def model():
    return models.build_classifier("mobilenet_v2", 2, SIZE)


def test_extractors_are_built_once_per_model_and_layers(model):
    assert features.feature_extractor(model) is features.feature_extractor(model)
    assert features.feature_extractor(model, LAYERS) is features.feature_extractor(model, LAYERS)
    assert features.feature_extractor(model) is not features.feature_extractor(model, LAYERS)


def test_multi_depth_features_are_the_pooled_outputs_of_those_layers(model, tmp_path, monkeypatch):
    monkeypatch.setattr(features, "CACHE_DIR", tmp_path)
    data = _images()
    got = features.extract_features(model, data, layers=LAYERS)
    base = models.base_of(model)
    taps = keras.Model(base.input, [base.get_layer(name).output for name in LAYERS])
    x = model.get_layer("preprocess")(data.images.astype("float32"))
    expected = np.concatenate([np.asarray(t).mean(axis=(1, 2)) for t in taps(x)], axis=1)
    assert got.shape == (6, 192 + 1280) and got.dtype == np.float32
    assert np.abs(expected).max() > 0.1  # real activations, not vanishing ones
    tolerance = 1e-4 if model.compute_dtype == "float32" else 0.05 * np.abs(expected).max()
    np.testing.assert_allclose(got, expected, atol=tolerance)
    pooled = features.extract_features(model, data)  # another key: not the multi-depth file
    assert pooled.shape == (6, 1280)
    assert len(list((tmp_path / "features").glob("*.npy"))) == 2


def test_unknown_tap_layers_are_named(model):
    with pytest.raises(BackboneError, match="no layer"):
        features.feature_extractor(model, ("nope",))


def test_standardized_head_starts_with_features_of_mean_0_and_variance_1():
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 3.0, (200, 4)).astype("float32") * np.array([1, 10, 100, 1000], "float32")
    head = models.build_head(4, 3, dropout=0, standardize_with=x)
    standardized = np.asarray(head.get_layer("standardize")(x))
    np.testing.assert_allclose(standardized.mean(axis=0), 0, atol=1e-3)
    np.testing.assert_allclose(standardized.std(axis=0), 1, atol=1e-3)
