"""Backbone registry, offline ImageNet weights, freezing and BN-safe unfreezing (§4.4)."""

import contextlib

import keras
import numpy as np
import pytest

from ftutils import backbones, cache, data, frozen, models, recipe, training
from ftutils.errors import BackboneError, WeightsUnavailableError


def test_mobilenet_v2_imagenet_weights_load_offline_at_96px():
    base = backbones.get_base("mobilenet_v2", 96, weights="imagenet")
    assert base.input_shape == (None, 96, 96, 3)
    assert base.output_shape == (None, 3, 3, 1280)
    # The cached file's first conv kernel, read directly, is what the 96-px base now holds.
    reference = backbones.get_base("mobilenet_v2", 224, weights="imagenet")
    np.testing.assert_array_equal(
        base.get_layer("Conv1").kernel.numpy(), reference.get_layer("Conv1").kernel.numpy()
    )
    assert np.abs(base.get_layer("Conv1").kernel.numpy()).sum() > 0


def test_registry_has_the_book_backbones():
    assert {"mobilenet", "mobilenet_v2", "vgg16", "resnet50", "efficientnet_b0"} <= set(
        backbones.BACKBONES
    )


def test_unknown_backbone_lists_known_ones():
    with pytest.raises(BackboneError, match="known backbones: .*mobilenet_v2"):
        backbones.get_base("mobilenet_v9", 96)


@pytest.mark.parametrize("size", [16, 0, -96, 96.5])
def test_input_size_below_minimum_zero_negative_or_fractional(size):
    with pytest.raises(BackboneError, match=r"not usable for mobilenet_v2.*pixels >= 32"):
        backbones.get_base("mobilenet_v2", size)


def test_no_input_size_means_the_backbones_default():
    assert backbones.check_image_size("mobilenet_v2", None) == 224


def test_a_weights_path_that_is_missing_or_not_a_weights_file_is_named(tmp_path):
    missing = tmp_path / "missing.weights.h5"
    with pytest.raises(WeightsUnavailableError, match=r"missing\.weights\.h5 does not exist"):
        backbones.get_base("mobilenet_v2", 32, weights=missing)
    not_weights = tmp_path / "photo.weights.h5"
    not_weights.write_bytes(b"\xff\xd8 a JPEG, not HDF5")
    with pytest.raises(WeightsUnavailableError, match=r"photo\.weights\.h5 is not a weights file"):
        backbones.get_base("mobilenet_v2", 32, weights=not_weights)


def test_a_download_that_does_not_match_its_hash_is_deleted_with_a_clear_error(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    target = tmp_path / "models" / backbones.spec("mobilenet_v2").weights_file

    def truncated_download(*args, **kwargs):
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"\x89HDF\r\n\x1a\n truncated")
        return str(target)

    monkeypatch.setattr(keras.utils, "get_file", truncated_download)
    with pytest.raises(WeightsUnavailableError, match="does not match its published hash"):
        backbones.get_base("mobilenet_v2", 32)
    assert not target.exists()


def test_cached_mobilenet_files_match_their_registered_hashes():
    """The hashes the downloads are checked against are those of the offline cache's files."""
    for name in ("mobilenet", "mobilenet_025", "mobilenet_v2"):
        entry = backbones.spec(name)
        path = backbones.imagenet_weights_path(name)
        assert backbones.file_hash(path, entry.weights_hash) == entry.weights_hash, name


@pytest.mark.parametrize("name", ["mobilenet_v2", "vgg16", "resnet50", "efficientnet_b0"])
def test_preprocessing_layer_matches_keras_preprocess_input(name, float32_policy):
    module = {
        "mobilenet_v2": keras.applications.mobilenet_v2,
        "vgg16": keras.applications.vgg16,
        "resnet50": keras.applications.resnet,
        "efficientnet_b0": keras.applications.efficientnet,
    }[name]
    images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    expected = module.preprocess_input(images.copy())
    # Rescaling multiplies by 1/127.5 where preprocess_input divides: one rounding apart
    np.testing.assert_allclose(backbones.preprocessing(name)(images), expected, atol=1e-6)


def test_missing_weights_offline_name_the_file_and_the_fix(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        print("Downloading data from https://example.invalid/vgg16.h5")  # as Keras does
        raise Exception("URL fetch failure: no network")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(WeightsUnavailableError, match=r"vgg16_weights.*KERAS_HOME"):
        backbones.get_base("vgg16", 32)
    printed = capsys.readouterr().out
    assert "is not in the Keras cache: downloading it" in printed
    assert "Downloading data from" not in printed  # one line of ours, not Keras' URL and bar


def test_freeze_leaves_no_trainable_weights():
    model = models.build_classifier("mobilenet_v2", 3, 32, weights=None)
    base = models.base_of(model)
    assert base.trainable_weights == []
    assert [w.path for w in model.trainable_weights] == ["classifier/kernel", "classifier/bias"]


def test_unfreeze_top_n_keeps_batchnorm_frozen():
    base = backbones.get_base("mobilenet_v2", 32, weights=None)
    backbones.freeze(base)
    backbones.unfreeze(base, top_n=10)
    top = base.layers[-10:]
    assert not any(layer.trainable for layer in base.layers[:-10])
    assert all(
        layer.trainable != isinstance(layer, keras.layers.BatchNormalization) for layer in top
    )


def test_unfreeze_from_layer_unknown_name():
    base = backbones.get_base("mobilenet_v2", 32, weights=None)
    with pytest.raises(BackboneError, match="no layer 'block_99_expand'"):
        backbones.unfreeze(base, from_layer="block_99_expand")


def test_fit_after_unfreeze_changes_convs_but_not_batchnorm_statistics():
    """The Keras 3 trap (keras-team/keras 20285): BN statistics survive a fine-tuning step."""
    model = models.build_classifier("mobilenet_v2", 3, 32, weights="imagenet")
    base = models.base_of(model)
    backbones.unfreeze(base, from_layer="block_16_expand")
    bns = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    means = [bn.moving_mean.numpy().copy() for bn in bns]
    variances = [bn.moving_variance.numpy().copy() for bn in bns]
    kernel = base.get_layer("Conv_1").kernel.numpy().copy()
    rng = np.random.default_rng(0)
    toy = data.ImageData(
        rng.integers(0, 255, (24, 32, 32, 3), dtype=np.uint8), np.arange(24) % 3, ("a", "b", "c")
    )
    training.compile_classifier(model, "adam", 1e-3)
    training.fit_classifier(model, toy, toy, epochs=1, verbose=0)
    for bn, mean, variance in zip(bns, means, variances, strict=True):
        np.testing.assert_array_equal(bn.moving_mean.numpy(), mean)
        np.testing.assert_array_equal(bn.moving_variance.numpy(), variance)
    assert not np.allclose(base.get_layer("Conv_1").kernel.numpy(), kernel)


def _write_legacy_h5(model: keras.Model, path) -> None:
    """Weights in Keras' legacy ``.h5`` layout, the layout of keras.applications' files."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as file:
        legacy_h5_format.save_weights_to_hdf5_group(file, model)


@pytest.mark.parametrize(
    "name", [n for n, entry in backbones.BACKBONES.items() if entry.weights_file is not None]
)
def test_every_imagenet_base_is_the_network_keras_builds_for_imagenet(
    name, tmp_path, monkeypatch, float32_policy
):
    """get_base(weights="imagenet") computes what keras.applications(weights="imagenet") does.

    The download is stubbed: a weights file of random values, written where the Keras cache
    holds the real one, is what both read. EfficientNet's imagenet network has one more layer
    than its weights=None one, so building with None and loading the file is not enough.
    """
    import sys

    entry = backbones.spec(name)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    weights = tmp_path / "models" / entry.weights_file
    source = entry.constructor(input_shape=(32, 32, 3), include_top=False, weights=None,
                               **entry.kwargs)  # fmt: skip
    rng = np.random.default_rng(1)
    for variable in source.weights:  # random, and a variance stays positive
        noise = rng.normal(0, 0.05, variable.shape)
        variable.assign(1 + np.abs(noise) if "variance" in variable.path else noise)
    _write_legacy_h5(source, weights)
    keras_module = sys.modules[entry.constructor.__module__]
    monkeypatch.setattr(keras_module.file_utils, "get_file", lambda *a, **k: str(weights))
    with pytest.warns() if name.startswith("mobilenet") else contextlib.nullcontext():
        expected = entry.constructor(
            input_shape=(32, 32, 3), include_top=False, weights="imagenet", **entry.kwargs
        )  # MobileNet warns that 32 px is not one of its ImageNet sizes
    built = backbones.get_base(name, 32, weights="imagenet")

    assert cache.architecture(built) == cache.architecture(expected)
    images = np.random.default_rng(2).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    got, want = (np.asarray(m(images, training=False)) for m in (built, expected))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert np.abs(want).sum() > 0


@pytest.mark.parametrize("name", sorted(recipe.TOP_BLOCK))
def test_every_top_block_cut_splits_its_classifier_exactly(name, float32_policy):
    """recipe.TOP_BLOCK's layer of each backbone is a clean cut: below it then above it
    computes what the whole classifier computes."""
    model = models.build_classifier(name, 3, 32, weights=None, dropout=0)
    split = frozen.cut(model, recipe.TOP_BLOCK[name])
    images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    whole = model(images, training=False)
    in_two = split.upper(split.lower(images, training=False), training=False)
    np.testing.assert_allclose(in_two, whole, rtol=1e-5, atol=1e-6)
