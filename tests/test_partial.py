"""Fine-tuning the top of a base on cached activations (§4.4-§4.5), at 32 px.

ImageNet weights (from the offline Keras cache) rather than random ones: a randomly
initialised MobileNetV2 shrinks activations to ~1e-10 by its top, which would make every
comparison below pass trivially.
"""

import keras
import numpy as np
import pytest

from ftutils import augment, backbones, features, models, partial
from ftutils.data import ImageData
from ftutils.errors import BackboneError

SIZE = 32


def _images(n=8, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, SIZE, SIZE, 3), dtype="uint8")
    return ImageData(images, np.arange(n) % 4, ("a", "b", "c", "d"))


def _classifier(dropout=0.2):
    return models.build_classifier("mobilenet_v2", 4, SIZE, dropout=dropout)


@pytest.fixture(scope="module")
def frozen():
    """One classifier for the read-only tests, with its predictions and pooled features."""
    model, data = _classifier(), _images()
    x = data.images.astype("float32")
    pooled = np.asarray(features.feature_extractor(model)([x]))  # built on model.inputs, a list
    return model, data, np.asarray(model(x)), pooled


@pytest.mark.parametrize("at", ["Conv1", "block_8_expand", "block_16_expand"])
def test_lower_then_upper_is_the_whole_classifier(frozen, at):
    model, data, expected, pooled = frozen
    split = partial.split_classifier(model, at)
    acts = np.asarray(split.lower(data.images.astype("float32")))  # eager: no tracing
    assert expected.max() > 0.3 and pooled.max() > 1.0  # real outputs, not vanishing ones
    np.testing.assert_allclose(np.asarray(split.upper(acts)), expected, atol=1e-4)
    np.testing.assert_allclose(np.asarray(split.pooled(acts)), pooled, rtol=1e-3, atol=1e-4)


def test_activations_runs_the_lower_part_over_a_dataset(frozen):
    model, data, _, _ = frozen
    split = partial.split_classifier(model, "block_16_expand")
    acts = partial.activations(split.lower, data, batch_size=3)
    assert acts.shape == (8, 1, 1, 160) and acts.dtype == np.float32
    eager = np.asarray(split.lower(data.images.astype("float32")), dtype="float32")
    # batches of 3 vs one of 8 round differently: to float32's precision, or bfloat16's
    # (8 significant bits, compounded over 16 blocks) under a mixed_bfloat16 policy
    atol = 1e-4 if model.compute_dtype == "float32" else 0.05 * np.abs(eager).max()
    np.testing.assert_allclose(acts, eager, atol=atol)


def test_training_the_upper_part_equals_training_the_classifier():
    data = _images()
    a, b = _classifier(dropout=0), _classifier(dropout=0)
    b.set_weights(a.get_weights())  # the same random head on both
    for model in (a, b):
        backbones.unfreeze(models.base_of(model), from_layer="block_16_expand")
        model.compile(
            optimizer=keras.optimizers.SGD(0.1),
            loss="sparse_categorical_crossentropy",
            run_eagerly=True,  # no tracing: faster for one step
        )
    split = partial.split_classifier(a, "block_16_expand")
    acts = np.asarray(split.lower(data.images.astype("float32")))
    base = models.base_of(a)
    kernel = base.get_layer("block_16_expand").kernel.numpy()
    moving_mean = base.get_layer("block_16_expand_BN").moving_mean.numpy()

    split.upper.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss="sparse_categorical_crossentropy",
        run_eagerly=True,
    )
    partial.fit_steps(split.upper, acts, data.labels, steps=1, batch_size=len(data))
    b.train_on_batch(data.images.astype("float32"), data.labels)  # one full batch: same step

    assert np.abs(base.get_layer("block_16_expand").kernel.numpy() - kernel).max() > 1e-6
    np.testing.assert_array_equal(
        base.get_layer("block_16_expand_BN").moving_mean.numpy(), moving_mean
    )
    for wa, wb in zip(a.weights, b.weights, strict=True):
        np.testing.assert_allclose(wa.numpy(), wb.numpy(), rtol=1e-4, atol=1e-6, err_msg=wa.path)


def test_fit_steps_runs_exactly_that_many_steps_even_on_a_tiny_set():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x, y = np.eye(3, dtype="float32"), np.array([0, 1, 1])
    history = partial.fit_steps(model, x, y, steps=7, batch_size=32)
    assert int(model.optimizer.iterations.numpy()) == 7
    assert len(history.history["loss"]) == 1
    with pytest.raises(ValueError, match="steps must be >= 1"):
        partial.fit_steps(model, x, y, steps=0)
    with pytest.raises(ValueError, match="got 3 and 2"):
        partial.fit_steps(model, x, y[:2], steps=1)


@pytest.mark.parametrize(
    ("at", "message"),
    [
        ("nope", "no layer 'nope'"),
        ("block_15_add", "has 2 inputs"),
        ("block_14_project", "skip connection"),
    ],
)
def test_bad_cuts_are_refused_with_the_reason(frozen, at, message):
    with pytest.raises(BackboneError, match=message):
        partial.split_classifier(frozen[0], at)


def test_augmenting_models_cannot_be_split():
    model = models.build_classifier(
        "mobilenet_v2", 4, SIZE, weights=None, augmentation=augment.augmentation(seed=0)
    )
    with pytest.raises(ValueError, match="augmentation=None"):
        partial.split_classifier(model, "block_16_expand")
