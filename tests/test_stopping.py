"""ftutils.stopping: the stopping rules compared in notebook 03_2."""

import numpy as np
import pytest

from ftutils import stopping


def test_tolerance_stops_after_the_first_small_drop():
    losses = [5.0, 3.0, 2.0, 1.95, 1.5, 1.49]
    assert stopping.tolerance_stop(losses, 0.1) == 3  # 2.0 -> 1.95 fell by 0.05 < 0.1
    assert stopping.tolerance_stop(losses, 0.01) == 5  # 1.5 -> 1.49 is the first below 0.01


def test_tolerance_runs_the_whole_budget_when_every_step_gains_enough():
    assert stopping.tolerance_stop([4.0, 3.0, 2.0, 1.0], 0.5) == 3


def test_tolerance_counts_a_rising_loss_as_stopped_falling():
    assert stopping.tolerance_stop([4.0, 3.0, 3.5, 1.0], 0.5) == 2


def test_tolerance_matches_gradient_descent_with_tol():
    # the scratch loop's own tol stops at the step the rule finds on its full curve
    import tensorflow as tf

    from ftutils.scratch import optimizers

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5)).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, 64)]

    def curve(tol):
        head = optimizers.SoftmaxRegression(5, 3, seed=0)

        def loss(xb, yb):
            logits = head.logits(xb)
            return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(yb, logits))

        return optimizers.gradient_descent(
            loss, head.variables, optimizers.ScratchSGD(0.1), x, y, 200, tol=tol
        ).epoch_loss

    full = curve(None)
    stopped = curve(1e-3)
    assert len(stopped) - 1 == stopping.tolerance_stop(full, 1e-3) < len(full) - 1


def test_early_stop_keeps_the_best_step():
    val = [3.0, 2.0, 1.0, 1.2, 1.1, 1.3, 0.9]
    assert stopping.early_stop(val, 3) == (5, 2)  # no lower loss in steps 3-5
    assert stopping.early_stop(val, 5) == (6, 6)  # the budget ends first, at a new best


def test_early_stop_at_the_budget_keeps_the_lowest():
    assert stopping.early_stop([3.0, 2.0, 2.5], 10) == (2, 1)


@pytest.mark.parametrize("bad", [[1.0], [[1.0, 2.0]]])
def test_tolerance_refuses_what_is_not_a_curve(bad):
    with pytest.raises(ValueError):
        stopping.tolerance_stop(bad, 0.1)


def test_early_stop_refuses_no_patience():
    with pytest.raises(ValueError):
        stopping.early_stop([1.0, 0.5], 0)


def test_threshold_stops_at_the_first_loss_at_or_below_it():
    losses = [5.0, 3.0, 2.0, 1.0, 0.5]
    assert stopping.threshold_stop(losses, 1.0, None) == 3
    assert stopping.threshold_stop(losses, 0.1, None) == 4  # never reached: the whole budget


def test_threshold_and_tolerance_whichever_comes_first():
    losses = [5.0, 3.0, 2.9, 1.0, 0.5]  # 3.0 -> 2.9 fell by 0.1
    assert stopping.threshold_stop(losses, 1.0, 0.5) == 2  # the flat step comes first
    assert stopping.threshold_stop(losses, 3.0, 0.5) == 1  # the threshold comes first
    assert stopping.threshold_stop(losses, None, 0.5) == stopping.tolerance_stop(losses, 0.5)


def test_threshold_needs_one_of_its_halves():
    with pytest.raises(ValueError):
        stopping.threshold_stop([2.0, 1.0], None, None)
