"""scripts/momentum_study.py: its optimisers, its measures of a loss curve, a tiny run, and the
committed file that notebook 03_3 reads (§3.3).

The notebook re-runs one (alpha, optimiser) live and its sanity checks compare it with the file.
"""

import json

import numpy as np
import pytest
import tensorflow as tf

from tests.script_loader import assert_made_by, load_script

study = load_script("momentum_study")

TINY = {
    **study.PARAMS,
    "images_per_class": 12,
    "val_per_class": 4,
    "batch_size": 8,
    "epochs": 2,
    "alphas": [0.01, 0.1],
    "power_iterations": 100,
    "curves_kept": 2,
    "seeds": [0, 1],
}


def tiny_study():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 16)
    x_pool = rng.normal(size=(3, 5))[labels] * 2 + rng.normal(size=(48, 5))
    return study.Study(TINY).with_features(x_pool, labels)


def test_keras_settings_of_the_three_optimisers():
    assert study.keras_settings("SGD", 0.1, 0.9) == (0.1, 0.0)
    lr, momentum = study.keras_settings("momentum, same effective step", 0.1, 0.9)
    assert lr == pytest.approx(0.01) and momentum == 0.9
    assert study.keras_settings("momentum, same lr", 0.1, 0.9) == (0.1, 0.9)
    with pytest.raises(ValueError, match="unknown optimiser"):
        study.keras_settings("Adam", 0.1, 0.9)


def test_curve_measures_of_a_known_curve():
    measured = study.curve_measures(np.array([3.0, 2.0, 2.5, 1.0, 1.5, 0.5]))
    assert measured["total_rise"] == pytest.approx(1.0)  # 0.5 + 0.5
    assert measured["largest_rise"] == pytest.approx(0.5)
    assert measured["rising_steps"] == pytest.approx(2 / 5)
    assert measured["mean_loss"] == pytest.approx(10.5 / 6)
    assert measured["final_loss"] == 0.5
    falling = study.curve_measures(np.array([3.0, 2.0, 1.0]))
    assert falling["total_rise"] == 0 and falling["largest_rise"] == 0


def test_a_tiny_run_and_its_sharpness_against_the_full_hessian():
    tiny = tiny_study()
    row = tiny.run(0.01, "momentum, same lr")
    updates = TINY["epochs"] * -(-tiny.X.shape[1] // TINY["batch_size"])
    assert len(row["curves"]) == 2 and all(len(c) == updates + 1 for c in row["curves"])
    for name in study.MEASURES:
        assert len(row[name]) == 2, name
    # the same Keras setting reached two ways gives the same run
    same_step = tiny.run(0.1, "momentum, same effective step")
    np.testing.assert_allclose(row["curves"], same_step["curves"], rtol=1e-4)
    kept = study.curve_measures(np.array(row["curves"][0]))  # the stored curve, to 5 digits
    assert kept["mean_loss"] == pytest.approx(row["mean_loss"][0], rel=1e-4)
    assert kept["final_loss"] == pytest.approx(row["final_loss"][0], rel=1e-4)
    # power iteration against the largest eigenvalue of the explicit Hessian, per seed
    from ftutils.scratch import optimizers

    stack = optimizers.SoftmaxRegressionStack(tiny.X.shape[2], 3, [0, 1])
    W, b = stack.variables
    estimated = tiny.sharpness(stack)
    d, k = W.shape[1], W.shape[2]
    for s in range(2):
        theta = tf.Variable(tf.concat([tf.reshape(W[s], [-1]), tf.reshape(b[s], [-1])], 0))
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                logits = tiny.X[s] @ tf.reshape(theta[: d * k], (d, k)) + theta[d * k :]
                loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(tiny.Y[s], logits))
            gradient = inner.gradient(loss, theta)
        hessian = outer.jacobian(gradient, theta).numpy()
        top = np.linalg.eigvalsh((hessian + hessian.T) / 2).max()
        assert estimated[s] == pytest.approx(top, rel=0.02), (s, estimated[s], top)


committed = json.loads(study.RESULTS.read_text())


def test_the_committed_file_says_how_it_was_made_and_holds_every_run():
    assert_made_by(committed["provenance"], "python scripts/momentum_study.py", study.PARAMS)
    plan = [(a, o) for a in study.PARAMS["alphas"] for o in study.OPTIMISERS]
    assert [(row["alpha"], row["optimiser"]) for row in committed["runs"]] == plan
    for row in committed["runs"]:
        for name in study.MEASURES:
            assert len(row[name]) == len(study.PARAMS["seeds"]), (row["alpha"], name)
        assert len(row["curves"]) == study.PARAMS["curves_kept"]
