"""Source-split pretraining: weights are trained, saved, reused and load into a new classifier."""

import random

import numpy as np
import tensorflow as tf

from ftutils import models, transfer
from ftutils.config import set_seed


def _next_random_numbers() -> tuple:
    """The next draw of Python's, NumPy's and TensorFlow's global generators."""
    return random.random(), float(np.random.rand()), float(tf.random.uniform(()))


def test_source_pretraining_is_cached_and_loads_into_a_target_classifier(tmp_path, monkeypatch):
    monkeypatch.setattr(transfer, "CACHE_DIR", tmp_path)
    settings = dict(per_class=6, epochs=1, verbose=0)
    set_seed(7)
    untouched = _next_random_numbers()
    set_seed(7)
    path = transfer.source_pretrained_weights("mobilenet_v2", 32, **settings)
    # the caller's generators are where they were, whether the weights were trained ...
    assert _next_random_numbers() == untouched
    assert path.is_file() and path.parent == tmp_path / "pretrained"
    stamp = path.stat().st_mtime_ns
    set_seed(7)
    assert transfer.source_pretrained_weights("mobilenet_v2", 32, **settings) == path
    assert path.stat().st_mtime_ns == stamp  # reused, not retrained
    assert _next_random_numbers() == untouched  # ... or found cached

    fresh = models.build_classifier("mobilenet_v2", 5, 32, weights=None)
    loaded = models.build_classifier("mobilenet_v2", 5, 32, weights=path)
    kernel = models.base_of(loaded).get_layer("Conv1").kernel.numpy()
    assert not np.array_equal(kernel, models.base_of(fresh).get_layer("Conv1").kernel.numpy())
    other = transfer.source_weights_path("mobilenet_v2", 32, per_class=7, epochs=1)
    assert other != path  # another configuration, another file


def test_imagenet_is_preferred_when_available():
    weights, description = transfer.pretrained_weights("mobilenet_v2", 96)
    assert weights == "imagenet" and "ImageNet" in description


def test_source_and_target_splits_are_disjoint_and_cover_fashion_mnist():
    assert set(transfer.SOURCE_CLASSES).isdisjoint(transfer.TARGET_CLASSES)
    assert set(transfer.SOURCE_CLASSES) | set(transfer.TARGET_CLASSES) == set(range(10))
