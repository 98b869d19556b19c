"""The default recipe (§4.4-§4.5): multi-depth features of two bases, several heads averaged."""

from pathlib import Path

import numpy as np
import pytest

from ftutils import config, frozen, models, recipe, training
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


_FIT_ARRAYS = frozen.fit_arrays


def _fine_tuned(memory_budget, tmp_path, monkeypatch):
    """Both phases of ``fine_tune`` from the same start, with activations under the cache
    folder ``tmp_path``; the weights, the record, and the arrays each fit was given."""
    monkeypatch.setattr(frozen, "CACHE_DIR", tmp_path)
    given = []
    monkeypatch.setattr(frozen, "fit_arrays", lambda m, x, *a, **k: given.append(x) or
                        _FIT_ARRAYS(m, x, *a, **k))  # fmt: skip
    config.set_seed(0)
    model = models.build_classifier("mobilenet_v2", 3, SIZE, weights=None)
    record = recipe.fine_tune(
        model, _toy(), _toy(seed=1), head_epochs=2, finetune_epochs=2, head_lr=0.01,
        unfreeze_from="block_16_expand", patience=None, batch_size=4,
        memory_budget=memory_budget,
    )  # fmt: skip
    return model.get_weights(), record, given


def test_activations_over_the_memory_budget_train_from_disk_as_from_memory(tmp_path, monkeypatch):
    in_memory, memory_record, arrays = _fine_tuned(None, tmp_path / "ram", monkeypatch)
    assert not any(isinstance(x, np.memmap) for x in arrays)
    on_disk, disk_record, mapped = _fine_tuned(1, tmp_path / "disk", monkeypatch)
    assert len(mapped) == 2 and all(isinstance(x, np.memmap) for x in mapped)
    assert {Path(x.filename).parent for x in mapped} == {tmp_path / "disk" / "activations"}
    for ram, disk in zip(arrays, mapped, strict=True):
        np.testing.assert_allclose(ram, disk, rtol=1e-5, atol=1e-6)  # written part by part
    for ram, disk in zip(in_memory, on_disk, strict=True):
        np.testing.assert_allclose(ram, disk, rtol=1e-5, atol=1e-6)
    for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(memory_record.series(name), disk_record.series(name),
                                   rtol=1e-5, atol=1e-6)  # fmt: skip


def test_activations_are_written_to_disk_in_parts(tmp_path, monkeypatch):
    monkeypatch.setattr(frozen, "CACHE_DIR", tmp_path)
    monkeypatch.setattr(frozen, "_PART_BYTES", 1)  # one batch per part
    model = models.build_classifier("mobilenet_v2", 3, SIZE, weights=None)
    lower = frozen.cut(model, "block_16_expand").lower
    whole = frozen.activations(lower, _toy(n=10), batch_size=4, use_disk_cache=False)
    parts = frozen.activations(lower, _toy(n=10), batch_size=4, memory_budget=0)
    assert isinstance(parts, np.memmap) and not parts.flags.writeable
    np.testing.assert_array_equal(whole, parts)
    again = frozen.activations(lower, _toy(n=10), batch_size=4, memory_budget=0)  # a hit
    assert isinstance(again, np.memmap) and again.filename == parts.filename
    assert isinstance(frozen.activations(lower, _toy(n=10), batch_size=4), np.ndarray)
