"""Training helpers: records, determinism, label checks, two-phase fine-tune, cached features."""

import numpy as np
import pytest

from ftutils import config, data, features, models, training
from ftutils.errors import DataError


def _toy(n=30, size=32, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % n_classes
    # Class-dependent brightness, so there is something to learn.
    images = rng.integers(0, 60, (n, size, size, 3)) + 80 * labels[:, None, None, None]
    return data.ImageData(images.astype("uint8"), labels, tuple(f"c{i}" for i in range(n_classes)))


def _train_once(seed):
    config.set_seed(seed)
    model = models.build_classifier("mobilenet_v2", 3, 32, weights=None, dropout=0.5)
    training.compile_classifier(model, "adam", 1e-2)
    training.fit(model, _toy(), _toy(seed=1), epochs=2, seed=seed, verbose=0)
    return model.get_layer("classifier").kernel.numpy()


def test_same_seed_gives_identical_training_results():
    first, second = _train_once(0), _train_once(0)
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, _train_once(1))


def test_fit_rejects_data_with_other_classes():
    model = models.build_classifier("mobilenet_v2", 10, 32, weights=None)
    training.compile_classifier(model)
    with pytest.raises(DataError, match="predicts 10 classes but the data has 3"):
        training.fit(model, _toy(), _toy(), epochs=1, verbose=0)


def test_two_phase_finetune_records_both_phases_in_order():
    model = models.build_classifier("mobilenet_v2", 3, 32, weights=None)
    record = training.two_phase_finetune(
        model, _toy(), _toy(seed=1), head_epochs=2, finetune_epochs=1, unfreeze_top_n=5, verbose=0
    )
    assert [row["phase"] for row in record.rows] == ["head", "head", "fine-tune"]
    assert record.phases() == [("head", 1, 2), ("fine-tune", 3, 3)]
    assert len(record.series("val_accuracy")) == 3
    assert models.base_of(model).trainable_weights  # phase 2 left the top unfrozen


def test_unknown_optimizer():
    with pytest.raises(ValueError, match="choose from sgd, momentum"):
        training.make_optimizer("lbfgs", 0.1)


def test_cached_features_match_the_model_and_are_reused(tmp_path, monkeypatch):
    monkeypatch.setattr(features, "CACHE_DIR", tmp_path)
    model = models.build_classifier("mobilenet_v2", 3, 32, weights="imagenet")
    toy = _toy()
    first = features.extract_features(model, toy)
    assert first.shape == (len(toy), 1280)
    assert len(list(tmp_path.glob("features/*.npy"))) == 1
    direct = features.feature_extractor(model).predict(data.make_dataset(toy, 32), verbose=0)
    np.testing.assert_allclose(first, direct, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(features.extract_features(model, toy), first)


def test_head_trained_on_features_transfers_to_the_full_model(tmp_path, monkeypatch):
    monkeypatch.setattr(features, "CACHE_DIR", tmp_path)
    model = models.build_classifier("mobilenet_v2", 3, 32, weights="imagenet")
    train, val = _toy(), _toy(seed=1)
    head, record = features.train_head(
        features.extract_features(model, train), train,
        features.extract_features(model, val), val, epochs=5,
    )  # fmt: skip
    assert len(record.rows) == 5
    models.copy_head(head, model)
    via_head = np.argmax(head.predict(features.extract_features(model, val), verbose=0), axis=1)
    np.testing.assert_array_equal(training.predict_labels(model, val), via_head)
