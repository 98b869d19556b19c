"""§3.2-§3.3: from-scratch gradient descent and momentum against keras.optimizers.SGD."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from ftutils.scratch import losses, optimizers

pytestmark = pytest.mark.usefixtures("float32_policy")  # identities in float32

A = np.diag([1.0, 50.0])  # an ill-conditioned quadratic f = θᵀAθ / 2


def grad(theta):
    return A @ theta


def keras_trajectory(theta0, steps, learning_rate, momentum):
    """θ_0..θ_steps of keras.optimizers.SGD on the quadratic, gradients fed by hand."""
    theta = keras.Variable(np.asarray(theta0, "float32"))
    optimizer = keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum)
    points = [theta.numpy()]
    for _ in range(steps):
        g = tf.linalg.matvec(tf.constant(A, tf.float32), tf.convert_to_tensor(theta))
        optimizer.apply_gradients([(g, theta)])
        points.append(theta.numpy())
    return np.array(points)


def toy_problem(n=60, d=8, k=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype("float32")
    labels = rng.integers(0, k, n)
    return x, labels, np.eye(k, dtype="float32")[labels]


def test_one_gd_step_equals_keras_sgd():
    theta = np.array([1.0, -2.0], "float32")
    g = np.array([0.5, 3.0], "float32")
    var = keras.Variable(theta)
    keras.optimizers.SGD(learning_rate=0.1).apply_gradients([(tf.constant(g), var)])
    np.testing.assert_allclose(optimizers.gd_step(theta, g, 0.1), var.numpy(), rtol=1e-6)


def test_keras_form_is_what_keras_sgd_momentum_does():
    ours = optimizers.trajectory(grad, [-9.0, 1.5], 30, 0.01, 0.9, form="keras")
    theirs = keras_trajectory([-9.0, 1.5], 30, 0.01, 0.9)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)


def test_ema_form_equals_keras_with_scaled_learning_rate():
    alpha, beta = 0.036, 0.9
    ema = optimizers.trajectory(grad, [-9.0, 1.5], 60, alpha, beta, form="ema")
    scaled = optimizers.keras_learning_rate(alpha, beta)
    np.testing.assert_allclose(
        ema, optimizers.trajectory(grad, [-9.0, 1.5], 60, scaled, beta, form="keras"), atol=1e-12
    )
    np.testing.assert_allclose(ema, keras_trajectory([-9.0, 1.5], 60, scaled, beta), atol=1e-4)
    same_number = optimizers.trajectory(grad, [-9.0, 1.5], 60, alpha, beta, form="keras")
    assert np.abs(same_number - ema).max() > 1.0  # α itself in Keras is a 10x larger step


def test_beta_zero_is_plain_gradient_descent():
    for form in optimizers.FORMS:
        np.testing.assert_allclose(
            optimizers.trajectory(grad, [1.0, 1.0], 5, 0.01, 0.0, form),
            optimizers.trajectory(grad, [1.0, 1.0], 5, 0.01),
        )


def keras_head(x, labels, learning_rate, momentum, batch_size, epochs):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((x.shape[1],)), keras.layers.Dense(int(labels.max()) + 1, "softmax")]
    )
    start = [w.copy() for w in model.get_weights()]
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate, momentum=momentum),
        loss="sparse_categorical_crossentropy",
    )
    model.fit(x, labels, batch_size=batch_size, epochs=epochs, shuffle=False, verbose=0)
    return start, model.get_weights()


@pytest.mark.parametrize("batch_size, momentum", [(None, 0.0), (20, 0.9)])
def test_gradient_descent_matches_keras_fit(batch_size, momentum):
    x, labels, one_hot = toy_problem()
    start, expected = keras_head(x, labels, 0.05, momentum, batch_size or len(x), 10)
    head = optimizers.SoftmaxRegression(x.shape[1], 3)
    head.set_weights(start)

    def loss_fn(xb, yb):
        return tf.reduce_mean(losses.cross_entropy_from_logits(yb, head.logits(xb)))

    optimizer = optimizers.ScratchSGD(0.05, momentum, form="keras")
    trace = optimizers.gradient_descent(
        loss_fn, head.variables, optimizer, x, one_hot, 10, batch_size, shuffle=False
    )
    for ours, theirs in zip(head.get_weights(), expected, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)
    assert len(trace.epoch_loss) == 11 and trace.epoch_loss[-1] < trace.epoch_loss[0]
    assert len(trace.batch_loss) == 10 * (1 if batch_size is None else 3)


def test_gradient_descent_stops_when_the_loss_stops_falling_and_records_monitor():
    x, labels, one_hot = toy_problem()
    head = optimizers.SoftmaxRegression(x.shape[1], 3)

    def loss_fn(xb, yb):
        return tf.reduce_mean(losses.cross_entropy_from_logits(yb, head.logits(xb)))

    trace = optimizers.gradient_descent(
        loss_fn,
        head.variables,
        optimizers.ScratchSGD(0.1),
        x,
        one_hot,
        epochs=1000,
        tol=1e-3,
        monitor=lambda: head.accuracy(x, labels),
    )
    assert 2 < len(trace.epoch_loss) < 1001
    assert trace.epoch_loss[-2] - trace.epoch_loss[-1] < 1e-3
    assert len(trace.monitor) == len(trace.epoch_loss) and trace.monitor[-1] > trace.monitor[0]


def test_bad_settings_are_explained():
    x, _, one_hot = toy_problem()
    head = optimizers.SoftmaxRegression(x.shape[1], 3)
    with pytest.raises(ValueError, match="batch_size"):
        optimizers.gradient_descent(
            lambda a, b: 0.0, head.variables, optimizers.ScratchSGD(0.1), x, one_hot, 1, 0
        )
    with pytest.raises(ValueError, match="beta"):
        optimizers.ScratchSGD(0.1, 1.0)
    with pytest.raises(ValueError, match="form"):
        optimizers.trajectory(grad, [1.0, 1.0], 3, 0.1, 0.5, form="nesterov")
    with pytest.raises(ValueError, match="shape"):
        head.set_weights([np.zeros((2, 2)), np.zeros(3)])


def test_softmax_regression_stack_heads_match_single_heads():
    x = np.random.default_rng(0).normal(size=(2, 6, 4)).astype("float32")
    labels = np.array([[0, 1, 2, 0, 1, 2], [2, 2, 1, 1, 0, 0]])
    y = np.eye(3, dtype="float32")[labels]
    stack = optimizers.SoftmaxRegressionStack(4, 3, seeds=[0, 1])
    for s in range(2):
        single = optimizers.SoftmaxRegression(4, 3, seed=s)
        np.testing.assert_allclose(stack.logits(x)[s], single.logits(x[s]), rtol=1e-6)
        np.testing.assert_allclose(stack.accuracy(x, labels)[s], single.accuracy(x[s], labels[s]))
    assert stack.losses(x, y).shape == (2,)
    stack.W.assign_add(tf.ones_like(stack.W))
    stack.reset()
    np.testing.assert_array_equal(stack.W.numpy(), stack.start[0])
