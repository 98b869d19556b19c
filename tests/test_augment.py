"""Augmentation layers (§3.5): the identity at inference, random in training."""

import keras
import numpy as np
import pytest

from ftutils import augment, frozen, models
from ftutils.data import ImageData, make_dataset

ALL = dict(crop=0.3, brightness=0.2, seed=1)


def _images(n=6, size=48, seed=0):
    """Smooth-ish random RGB images in [0, 255] with a non-symmetric pattern."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (n, size, size, 3)).astype("float32")
    images[:, :, : size // 3] *= 0.2  # dark left third: a flip or shift visibly changes it
    return images


def test_default_signature_still_builds_the_five_original_layers():
    names = [layer.__class__.__name__ for layer in augment.augmentation().layers]
    assert names == [
        "RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast"
    ]  # fmt: skip
    assert tuple(augment.transforms(**ALL)) == augment.TRANSFORMS


@pytest.mark.parametrize("name", augment.TRANSFORMS)
def test_each_transform_is_identity_at_inference_and_random_in_training(name, float32_policy):
    x = _images()
    layer = augment.transforms(**ALL)[name]
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)
    y = np.asarray(layer(x, training=True))
    assert y.shape == x.shape
    changed = [not np.allclose(y[i], x[i]) for i in range(len(x))]
    assert any(changed), f"{name} left every image unchanged in training"


def test_stack_in_a_model_is_identity_at_inference_and_differs_between_calls(float32_policy):
    x = _images()
    stack = augment.augmentation(**ALL)
    model = keras.Sequential([keras.Input(x.shape[1:]), stack])
    np.testing.assert_array_equal(model.predict(x, verbose=0), x)
    first, second = (np.asarray(model(x, training=True)) for _ in range(2))
    assert not np.allclose(first, x) and not np.allclose(first, second)
    assert not stack.trainable_weights  # augmentation has no parameters to learn


def test_seeded_layers_get_distinct_seeds_and_repeat_exactly():
    seeds = [layer.seed for layer in augment.transforms(**ALL).values()]
    assert len(set(seeds)) == len(seeds)  # equal seeds would draw identical random numbers
    x = _images()
    first = np.asarray(augment.augmentation(**ALL)(x, training=True))
    again = np.asarray(augment.augmentation(**ALL)(x, training=True))
    np.testing.assert_array_equal(first, again)


def test_crop_windows_differ_per_image_and_keep_the_size():
    x = np.repeat(_images(1), 8, axis=0)  # the same image 8 times
    y = np.asarray(augment.RandomCropResize(0.4, seed=0)(x, training=True))
    assert y.shape == x.shape
    assert len({row.tobytes() for row in y.round(2)}) == 8


def test_crop_fraction_out_of_range_is_a_clear_error():
    with pytest.raises(ValueError, match="crop fraction must be between 0 and 1"):
        augment.RandomCropResize(1.0)


def test_crop_layer_survives_a_config_round_trip():
    layer = augment.RandomCropResize(0.25, seed=7, name="c")
    clone = augment.RandomCropResize.from_config(layer.get_config())
    assert (clone.fraction, clone.seed, clone.name) == (0.25, 7, "c")


def test_cached_feature_validation_equals_evaluating_through_the_base():
    """§3.5: the augmented model is validated on cached features, as if through the base."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)
    val = ImageData(images, np.arange(24) % 3, ("a", "b", "c"))
    model = models.build_classifier(
        "mobilenet_025", 3, 32, weights=None, augmentation=augment.augmentation(**ALL)
    )
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    callback = frozen.CachedFeatureValidation(
        frozen.extract_features(model, val, 8, False), val.labels
    )
    callback.set_model(model)
    logs = {}
    callback.on_epoch_end(0, logs)
    loss, accuracy = model.evaluate(make_dataset(val, 32, 8), verbose=0)
    assert logs["val_accuracy"] == pytest.approx(accuracy)
    assert logs["val_loss"] == pytest.approx(loss, rel=1e-4)
