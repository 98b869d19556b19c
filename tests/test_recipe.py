"""The default recipe (§4.4-§4.5): multi-depth features of two bases, several heads averaged."""

import numpy as np
import pytest

from ftutils import frozen, models, recipe, training
from ftutils.data import ImageData

SIZE = 32


def _toy(n=24, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    images = rng.integers(0, 60, (n, SIZE, SIZE, 3)) + 80 * labels[:, None, None, None]
    return ImageData(images.astype("uint8"), labels, ("a", "b", "c"))


def test_the_ensemble_is_one_model_averaging_its_heads(tmp_path, monkeypatch):
    monkeypatch.setattr(frozen, "CACHE_DIR", tmp_path)
    train, val = _toy(), _toy(seed=1)
    model, record = recipe.feature_ensemble(train, val, image_size=SIZE, heads=2, epochs=4)
    assert [phase for phase, _, _ in record.phases()] == ["head 1", "head 2"]
    heads = [layer for layer in model.layers if layer.name.startswith("head")]
    extractors = [layer for layer in model.layers if layer.name.startswith("multi_depth")]
    assert len(heads) == 2 and len(extractors) == 2
    images = val.images.astype("float32")
    features = np.concatenate([np.asarray(e(images)) for e in extractors], axis=1)
    expected = np.mean([np.asarray(h(features)) for h in heads], axis=0)
    np.testing.assert_allclose(np.asarray(model(images)), expected, rtol=1e-5, atol=1e-6)
    assert model.output.dtype == "float32"
    assert 0.0 <= training.accuracy(model, val) <= 1.0


def test_unknown_ensemble_backbones_are_named():
    with pytest.raises(ValueError, match="choose from mobilenet_v2, mobilenet"):
        recipe.feature_ensemble(_toy(), _toy(), backbone_names=("vgg16",))


def test_the_classifier_names_its_base():
    model = models.build_classifier("mobilenet_v2", 3, SIZE, weights=None)
    assert models.base_of(model) is model.base
    assert model.base.name.startswith("mobilenet")
    assert len(model.weights) == len({id(w) for w in model.weights})  # not tracked twice
