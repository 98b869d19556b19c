"""experiments.snapshot / restore: a compiled model's training state (used by the §2.2 sweep)."""

import keras
import numpy as np
import pytest

from ftutils import config, experiments, training


def _model():
    config.set_seed(0)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    training.compile_classifier(model, "adam", 1e-2)
    return model


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    return x, (x[:, 0] > 0).astype("int64")


def _fit(model, seed):
    config.set_seed(seed)
    x, y = _data()
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    return [w.numpy() for w in model.weights]


def test_restore_makes_a_rerun_identical_to_the_first_run_without_recompiling():
    model = _model()
    start = experiments.snapshot(model)
    first = _fit(model, seed=1)
    train_function = model.train_function
    assert int(model.optimizer.iterations.numpy()) == 8
    assert not np.array_equal(first[0], start.variables[0])

    experiments.restore(model, start)
    assert int(model.optimizer.iterations.numpy()) == 0
    np.testing.assert_array_equal(model.weights[0].numpy(), start.variables[0])
    second = _fit(model, seed=1)
    assert model.train_function is train_function  # the traced step was reused
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def test_snapshot_covers_optimizer_moments_and_batchnorm_statistics():
    model = _model()
    start = experiments.snapshot(model)
    _fit(model, seed=0)
    moving_mean = model.layers[1].moving_mean
    assert not np.array_equal(moving_mean.numpy(), np.zeros(8))
    experiments.restore(model, start)
    np.testing.assert_array_equal(moving_mean.numpy(), np.zeros(8))
    moments = [v.numpy() for v in model.optimizer.variables if "momentum" in v.path]
    assert moments and all(not m.any() for m in moments)


def test_snapshot_needs_a_compiled_model_and_restore_a_matching_one():
    with pytest.raises(ValueError, match="compile the model"):
        experiments.snapshot(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
    state = experiments.snapshot(_model())
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    training.compile_classifier(other)
    experiments.snapshot(other)
    with pytest.raises(ValueError, match="taken from another model"):
        experiments.restore(other, state)
