"""Frozen computation done once (§2.2, §4.4-§4.5): cuts, activations, multi-depth features.

ImageNet weights (from the offline Keras cache) rather than random ones: a randomly
initialised MobileNetV2 shrinks activations to ~1e-10 by its top, which would make every
comparison below pass trivially.
"""

import keras
import numpy as np
import pytest

from ftutils import augment, backbones, frozen, models, training
from ftutils.data import ImageData
from ftutils.errors import BackboneError

SIZE = 32
LAYERS = ("block_6_expand_relu", "out_relu")


def _images(n=8, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, SIZE, SIZE, 3), dtype="uint8")
    return ImageData(images, np.arange(n) % 4, ("a", "b", "c", "d"))


def _classifier(dropout=0.2):
    return models.build_classifier("mobilenet_v2", 4, SIZE, dropout=dropout)


@pytest.fixture(scope="module")
def classifier():
    """One classifier for the read-only tests, with its predictions and pooled features.

    Seeded here: a module fixture is built before the per-test seeding fixture runs, so
    without it the head's start would depend on the tests that ran before in the worker.
    """
    keras.utils.set_random_seed(0)
    model, data = _classifier(), _images()
    x = data.images.astype("float32")
    pooled = np.asarray(frozen.cut(model).lower([x]))  # built on model.inputs, a list
    return model, data, np.asarray(model(x)), pooled


@pytest.mark.parametrize("at", ["Conv1", "block_8_expand", "block_16_expand"])
def test_lower_then_upper_is_the_whole_classifier(classifier, at):
    model, data, expected, pooled = classifier
    split = frozen.cut(model, at)
    acts = np.asarray(split.lower(data.images.astype("float32")))  # eager: no tracing
    assert expected.std() > 1e-3 and pooled.max() > 1.0  # real outputs, not vanishing ones
    np.testing.assert_allclose(np.asarray(split.upper(acts)), expected, atol=1e-4)
    np.testing.assert_allclose(np.asarray(split.pooled(acts)), pooled, rtol=1e-3, atol=1e-4)


def test_activations_runs_the_lower_part_over_a_dataset(classifier):
    model, data, _, _ = classifier
    split = frozen.cut(model, "block_16_expand")
    acts = frozen.activations(split.lower, data, batch_size=3, use_disk_cache=False)
    assert acts.shape == (8, 1, 1, 160) and acts.dtype == np.float32
    eager = np.asarray(split.lower(data.images.astype("float32")), dtype="float32")
    # batches of 3 vs one of 8 round differently: to float32's precision, or bfloat16's
    # (8 significant bits, compounded over 16 blocks) under a mixed_bfloat16 policy
    atol = 1e-4 if model.compute_dtype == "float32" else 0.05 * np.abs(eager).max()
    np.testing.assert_allclose(acts, eager, atol=atol)


def test_training_the_upper_part_equals_training_the_classifier(float32_policy):
    """One SGD step on cached activations below the cut is the step of the whole classifier:
    equal to float32 rounding (under bfloat16 the two paths round differently, by up to 1e-4
    in the kernels on an AVX2 CPU's oneDNN)."""
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
    split = frozen.cut(a, "block_16_expand")
    acts = np.asarray(split.lower(data.images.astype("float32")))
    base = models.base_of(a)
    kernel = base.get_layer("block_16_expand").kernel.numpy()
    moving_mean = base.get_layer("block_16_expand_BN").moving_mean.numpy()

    split.upper.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss="sparse_categorical_crossentropy",
        run_eagerly=True,
    )
    frozen.fit_steps(split.upper, acts, data.labels, steps=1, batch_size=len(data))
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
    history = frozen.fit_steps(model, x, y, steps=7, batch_size=32)
    assert int(model.optimizer.iterations.numpy()) == 7
    assert len(history.history["loss"]) == 1
    with pytest.raises(ValueError, match="steps must be >= 1"):
        frozen.fit_steps(model, x, y, steps=0)
    with pytest.raises(ValueError, match="got 3 and 2"):
        frozen.fit_steps(model, x, y[:2], steps=1)


@pytest.mark.parametrize(
    ("at", "message"),
    [
        ("nope", "no layer 'nope'"),
        ("block_15_add", "has 2 inputs"),
        ("block_14_project", "skip connection"),
    ],
)
def test_bad_cuts_are_refused_with_the_reason(classifier, at, message):
    with pytest.raises(BackboneError, match=message):
        frozen.cut(classifier[0], at)


def test_augmenting_models_cannot_be_cut_inside_the_base():
    model = models.build_classifier(
        "mobilenet_v2", 4, SIZE, weights=None, augmentation=augment.augmentation(seed=0)
    )
    with pytest.raises(ValueError, match="augmentation=None"):
        frozen.cut(model, "block_16_expand")


@pytest.fixture(scope="module")
def model():
    return models.build_classifier("mobilenet_v2", 2, SIZE)


def test_cuts_and_extractors_are_built_once_per_model(model):
    assert frozen.cut(model) is frozen.cut(model)
    assert frozen.multi_depth(model, LAYERS) is frozen.multi_depth(model, LAYERS)
    assert frozen.cut(model) is not frozen.multi_depth(model, LAYERS)


def test_multi_depth_features_are_the_pooled_outputs_of_those_layers(model, tmp_path, monkeypatch):
    monkeypatch.setattr(frozen, "CACHE_DIR", tmp_path)
    data = _images()
    got = frozen.extract_features(model, data, layers=LAYERS)
    base = models.base_of(model)
    taps = keras.Model(base.input, [base.get_layer(name).output for name in LAYERS])
    x = model.get_layer("preprocess")(data.images.astype("float32"))
    expected = np.concatenate([np.asarray(t).mean(axis=(1, 2)) for t in taps(x)], axis=1)
    assert got.shape == (8, 192 + 1280) and got.dtype == np.float32
    assert np.abs(expected).max() > 0.1  # real activations, not vanishing ones
    tolerance = 1e-4 if model.compute_dtype == "float32" else 0.05 * np.abs(expected).max()
    np.testing.assert_allclose(got, expected, atol=tolerance)
    pooled = frozen.extract_features(model, data)  # another key: not the multi-depth file
    assert pooled.shape == (8, 1280)
    assert len(list((tmp_path / "activations").glob("*.npy"))) == 2


def test_unknown_tap_layers_are_named(model):
    with pytest.raises(BackboneError, match="no layer"):
        frozen.multi_depth(model, ("nope",))


def test_standardized_head_starts_with_features_of_mean_0_and_variance_1():
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 3.0, (200, 4)).astype("float32") * np.array([1, 10, 100, 1000], "float32")
    head = models.build_head(4, 3, dropout=0, standardize_with=x)
    standardized = np.asarray(head.get_layer("standardize")(x))
    np.testing.assert_allclose(standardized.mean(axis=0), 0, atol=1e-3)
    np.testing.assert_allclose(standardized.std(axis=0), 1, atol=1e-3)


def test_the_head_trains_in_place_on_pooled_features(tmp_path, monkeypatch):
    """cut(model).upper shares the classifier's layers: no weights to copy back."""
    monkeypatch.setattr(frozen, "CACHE_DIR", tmp_path)
    model, train, val = _classifier(), _images(), _images(seed=1)
    part = frozen.cut(model)
    kernel = model.get_layer("classifier").kernel.numpy()
    np.testing.assert_array_equal(
        np.asarray(part.pooled(np.ones((2, 1280), "float32"))), np.ones((2, 1280))
    )
    x, x_val = (frozen.activations(part.lower, d) for d in (train, val))
    training.compile_classifier(part.upper, "momentum", 0.05)
    record = frozen.fit_arrays(part.upper, x, train.labels, (x_val, val.labels), epochs=3)
    assert [row["phase"] for row in record.rows] == ["head"] * 3
    assert np.abs(model.get_layer("classifier").kernel.numpy() - kernel).max() > 1e-4
    np.testing.assert_array_equal(
        training.predict_labels(model, val), training.predict_labels(part.upper, x_val)
    )


def test_activations_are_cached_by_weights_and_large_ones_stay_in_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(frozen, "CACHE_DIR", tmp_path)
    model, data = _classifier(), _images()
    first = frozen.extract_features(model, data)
    np.testing.assert_array_equal(frozen.extract_features(model, data), first)
    assert len(list(tmp_path.glob("activations/*.npy"))) == 1
    kernel = models.base_of(model).get_layer("Conv_1")
    kernel.kernel.assign(kernel.kernel.numpy() * 2)  # other weights: other features, other file
    assert not np.array_equal(frozen.extract_features(model, data), first)
    assert len(list(tmp_path.glob("activations/*.npy"))) == 2
    monkeypatch.setattr(frozen, "DISK_LIMIT_BYTES", first.nbytes - 1)
    frozen.extract_features(model, _images(seed=2))
    assert len(list(tmp_path.glob("activations/*.npy"))) == 2


def test_train_head_takes_any_optimizer_and_checks_the_number_of_classes():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 5)).astype("float32"), np.arange(40) % 4
    x[np.arange(40), y] += 3.0  # separable
    head, record = frozen.train_head(
        x, y, x, y, epochs=30, optimizer="rmsprop", learning_rate=0.05, dropout=0
    )
    assert head.output_shape == (None, 4) and len(record.rows) == 30
    assert isinstance(head.optimizer, keras.optimizers.RMSprop)
    assert training.accuracy(head, x, y) > 0.9
    with pytest.raises(ValueError, match="n_classes must be more"):
        frozen.train_head(x, y, x, y, n_classes=3)
