"""§3.2 梯度下降法 and §3.3 动量法 (momentum), written from scratch.

Three update rules, each a pure function usable on NumPy arrays and TensorFlow tensors:

* gradient descent: ``θ ← θ - α ∇L``;
* the article's momentum, an exponential moving average (EMA) of the gradients:
  ``v ← β v + (1 - β) ∇L``, ``θ ← θ - α v``;
* Keras' momentum (``keras.optimizers.SGD(momentum=β)``, "heavy ball", Polyak 1964):
  ``v ← β v - α ∇L``, ``θ ← θ + v``.

Starting from ``v = 0``, the two momentum forms give the same trajectory when Keras' learning
rate is ``α (1 - β)`` (:func:`keras_learning_rate`): by induction the Keras velocity is
``-α`` times the EMA velocity. :class:`ScratchSGD` applies any of the rules with the
``apply_gradients`` interface of a Keras optimizer, and :func:`gradient_descent` is the
article's loop (loss, gradient, update, until the loss stops falling) on full batches,
mini-batches or single examples, compiled into one TensorFlow graph.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

import keras
import numpy as np
import tensorflow as tf

from ftutils import distribute
from ftutils.scratch import losses

FORMS = ("ema", "keras")


def gd_step(theta, grad, learning_rate: float):
    """One gradient-descent step: ``θ - α ∇L``."""
    return theta - learning_rate * grad


def momentum_ema_step(theta, velocity, grad, learning_rate: float, beta: float):
    """The article's momentum step; returns ``(θ, v)`` with ``v = β v + (1-β) ∇L``, ``θ -= α v``."""
    velocity = beta * velocity + (1.0 - beta) * grad
    return theta - learning_rate * velocity, velocity


def momentum_keras_step(theta, velocity, grad, learning_rate: float, beta: float):
    """keras.optimizers.SGD's momentum step; returns ``(θ, v)``: ``v = β v - α ∇L``, ``θ += v``."""
    velocity = beta * velocity - learning_rate * grad
    return theta + velocity, velocity


def keras_learning_rate(learning_rate: float, beta: float) -> float:
    """The Keras SGD learning rate reproducing the EMA form with ``learning_rate``: ``α(1-β)``."""
    _check(learning_rate, beta, "ema")
    return learning_rate * (1.0 - beta)


def _check(learning_rate: float, beta: float, form: str) -> None:
    if learning_rate <= 0:
        raise ValueError(f"the learning rate must be positive, got {learning_rate}")
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"momentum beta must be in [0, 1), got {beta}")
    if form not in FORMS:
        raise ValueError(f"unknown momentum form {form!r}; choose 'ema' (the article) or 'keras'")


def _step(theta, velocity, grad, learning_rate: float, beta: float, form: str):
    if beta == 0.0:
        return gd_step(theta, grad, learning_rate), velocity
    if form == "ema":
        return momentum_ema_step(theta, velocity, grad, learning_rate, beta)
    return momentum_keras_step(theta, velocity, grad, learning_rate, beta)


def trajectory(
    grad_fn: Callable[[np.ndarray], np.ndarray],
    theta0: Iterable[float],
    steps: int,
    learning_rate: float,
    beta: float = 0.0,
    form: str = "ema",
) -> np.ndarray:
    """The points ``θ_0 .. θ_steps`` (shape ``(steps + 1, dim)``) of GD or momentum, in NumPy.

    ``beta=0`` is plain gradient descent; otherwise ``form`` picks the article's EMA momentum
    (``"ema"``) or Keras' (``"keras"``).
    """
    _check(learning_rate, beta, form)
    theta = np.asarray(theta0, dtype=np.float64)
    velocity = np.zeros_like(theta)
    points = [theta]
    for _ in range(steps):
        theta, velocity = _step(theta, velocity, grad_fn(theta), learning_rate, beta, form)
        points.append(theta)
    return np.stack(points)


class ScratchSGD:
    """Gradient descent or momentum from scratch, with a Keras optimizer's ``apply_gradients``.

    ``ScratchSGD(α)`` is plain GD; ``ScratchSGD(α, β)`` the article's EMA momentum;
    ``ScratchSGD(α, β, form="keras")`` the rule of ``keras.optimizers.SGD(α, momentum=β)``.
    """

    def __init__(self, learning_rate: float, momentum: float = 0.0, form: str = "ema"):
        _check(learning_rate, momentum, form)
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.form = form
        self.velocities: dict[int, tf.Variable] = {}
        self.built = False

    def build(self, variables: list) -> None:
        """Create one zero velocity per variable (before any ``tf.function`` traces a step)."""
        for var in variables:
            self.velocities[id(var)] = tf.Variable(tf.zeros(var.shape, var.dtype), trainable=False)
        self.built = True

    def apply_gradients(self, grads_and_vars: Iterable) -> None:
        pairs = list(grads_and_vars)
        if not self.built:
            self.build([var for _, var in pairs])
        for grad, var in pairs:
            if id(var) not in self.velocities:
                raise ValueError(
                    f"variable {getattr(var, 'name', var)} was not given to build(); build the "
                    "optimizer with every variable it will update"
                )
            velocity = self.velocities[id(var)]
            theta, new_velocity = _step(
                var, velocity, grad, self.learning_rate, self.momentum, self.form
            )
            velocity.assign(new_velocity)
            var.assign(theta)


class SoftmaxRegression:
    """The classifier head as two plain variables: ``logits = x W + b``, ``p = softmax(logits)``.

    ``W`` starts like a ``keras.layers.Dense`` kernel (Glorot-uniform, seeded) and ``b`` at
    zero, so the scratch optimizers above can train exactly what a Keras head would hold.
    """

    def __init__(self, n_features: int, n_classes: int, seed: int = 0):
        if n_features < 1 or n_classes < 2:
            raise ValueError(
                f"need n_features >= 1 and n_classes >= 2, got {n_features} and {n_classes}"
            )
        kernel = keras.initializers.GlorotUniform(seed=seed)((n_features, n_classes))
        self.W = tf.Variable(tf.cast(kernel, tf.float32), name="W")
        self.b = tf.Variable(tf.zeros(n_classes), name="b")

    @property
    def variables(self) -> list[tf.Variable]:
        return [self.W, self.b]

    def logits(self, x) -> tf.Tensor:
        return tf.matmul(tf.convert_to_tensor(x, tf.float32), self.W) + self.b

    def accuracy(self, x, labels) -> tf.Tensor:
        """Fraction of rows of ``x`` whose largest logit is at ``labels`` (integer classes)."""
        predicted = tf.argmax(self.logits(x), axis=-1)
        return tf.reduce_mean(tf.cast(predicted == tf.cast(labels, tf.int64), tf.float32))

    def get_weights(self) -> list[np.ndarray]:
        return [self.W.numpy(), self.b.numpy()]

    def set_weights(self, weights: list[np.ndarray]) -> None:
        """Load ``[W, b]``, e.g. a Keras ``Dense`` layer's ``get_weights()``."""
        for var, value in zip(self.variables, weights, strict=True):
            if tuple(np.shape(value)) != tuple(var.shape):
                raise ValueError(f"{var.name} has shape {var.shape}, got {np.shape(value)}")
            var.assign(value)


class SoftmaxRegressionStack:
    """One :class:`SoftmaxRegression` per seed, side by side: head s computes ``x[s] W[s] + b[s]``.

    Trains the heads of several seeds in one compiled loop (sum their losses); head s starts
    where ``SoftmaxRegression(seed=s)`` starts and follows the same path as it would alone.
    """

    def __init__(self, n_features: int, n_classes: int, seeds: Iterable[int]):
        singles = [SoftmaxRegression(n_features, n_classes, seed=s) for s in seeds]
        self.W = tf.Variable(np.stack([h.W.numpy() for h in singles]), name="W")
        self.b = tf.Variable(np.stack([h.b.numpy() for h in singles])[:, None, :], name="b")
        self.start = [self.W.numpy(), self.b.numpy()]

    @property
    def variables(self) -> list[tf.Variable]:
        return [self.W, self.b]

    def reset(self) -> None:
        """Back to the starting weights."""
        self.W.assign(self.start[0])
        self.b.assign(self.start[1])

    def logits(self, x) -> tf.Tensor:
        """``x``: (seeds, examples, features) -> (seeds, examples, classes)."""
        return tf.matmul(x, self.W) + self.b

    def losses(self, x, y) -> tf.Tensor:
        """One mean cross-entropy per seed; ``y`` one-hot, (seeds, examples, classes)."""
        return tf.reduce_mean(losses.cross_entropy_from_logits(y, self.logits(x)), axis=1)

    def accuracy(self, x, labels) -> tf.Tensor:
        """One accuracy per seed; ``labels`` integer classes, (seeds, examples)."""
        predicted = tf.argmax(self.logits(x), axis=-1)
        return tf.reduce_mean(tf.cast(predicted == labels, tf.float32), axis=1)


@dataclasses.dataclass
class Trace:
    """What :func:`gradient_descent` measured.

    ``batch_loss[i]``: the loss of the batch used by update ``i``, before the update.
    ``epoch_loss[e]``: the loss on all of ``x`` after ``e`` epochs (``epoch_loss[0]``: at start).
    ``monitor[e]``: the ``monitor()`` value after ``e`` epochs (empty without a monitor).
    """

    batch_loss: np.ndarray
    epoch_loss: np.ndarray
    monitor: np.ndarray

    @property
    def updates_per_epoch(self) -> int:
        return len(self.batch_loss) // max(len(self.epoch_loss) - 1, 1)


def gradient_descent(
    loss_fn: Callable[[tf.Tensor, tf.Tensor], tf.Tensor],
    variables: list,
    optimizer,
    x: np.ndarray,
    y: np.ndarray,
    epochs: int,
    batch_size: int | None = None,
    shuffle: bool = True,
    seed: int = 0,
    tol: float | None = None,
    monitor: Callable[[], tf.Tensor] | None = None,
) -> Trace:
    """The article's loop (§3.2): compute the loss and its gradient, update, repeat.

    ``loss_fn(x_batch, y_batch)`` returns a scalar computed from ``variables``;
    ``optimizer`` is a Keras optimizer or a :class:`ScratchSGD`. ``batch_size=None`` is
    full-batch gradient descent, ``1`` stochastic, anything between mini-batch; the last
    batch of an epoch may be smaller. Examples are reshuffled each epoch (seeded) unless
    ``shuffle=False``. With ``tol``, training stops after the first epoch whose full loss
    fell by less than ``tol`` ("直到损失函数停止下降"). ``monitor()`` (e.g. validation
    accuracy computed from ``variables``) is recorded at the start and after every epoch.
    The whole loop runs as one graph, on one device and outside any ``tf.distribute``
    strategy: the article's loop has no replicas to synchronise, so variables created
    under a strategy (e.g. a head built by ``ftutils.models`` under ``mirrored:2``) are
    refused; build them outside its scope.
    """
    distribute.require_single_device(variables, "scratch.gradient_descent")
    x = tf.convert_to_tensor(x, dtype=tf.float32)
    y = tf.convert_to_tensor(y)
    n = int(x.shape[0])
    size = n if batch_size is None else int(batch_size)
    if not 1 <= size <= n:
        raise ValueError(f"batch_size must be between 1 and the {n} examples, got {batch_size}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if len(y) != n:
        raise ValueError(f"x has {n} examples but y has {len(y)}")
    steps = -(-n // size)
    if not optimizer.built:
        optimizer.build(variables)

    @tf.function
    def run():
        batch_losses = tf.TensorArray(tf.float32, size=0, dynamic_size=True, element_shape=())
        epoch_losses = tf.TensorArray(tf.float32, size=0, dynamic_size=True, element_shape=())
        previous = tf.cast(loss_fn(x, y), tf.float32)
        epoch_losses = epoch_losses.write(0, previous)
        monitored = tf.TensorArray(tf.float32, size=0, dynamic_size=True, element_shape=())
        if monitor is not None:
            monitored = monitored.write(0, tf.cast(monitor(), tf.float32))
        order = tf.range(n)
        for epoch in tf.range(epochs):
            if shuffle:
                order = tf.random.experimental.stateless_shuffle(tf.range(n), seed=[seed, epoch])
            for i in tf.range(steps):
                index = order[i * size : (i + 1) * size]
                with tf.GradientTape() as tape:
                    loss = loss_fn(tf.gather(x, index), tf.gather(y, index))
                grads = tape.gradient(loss, variables)
                optimizer.apply_gradients(zip(grads, variables, strict=True))
                batch_losses = batch_losses.write(epoch * steps + i, tf.cast(loss, tf.float32))
            current = tf.cast(loss_fn(x, y), tf.float32)
            epoch_losses = epoch_losses.write(epoch + 1, current)
            if monitor is not None:
                monitored = monitored.write(epoch + 1, tf.cast(monitor(), tf.float32))
            if tol is not None and previous - current < tol:
                break
            previous = current
        return batch_losses.stack(), epoch_losses.stack(), monitored.stack()

    batch_loss, epoch_loss, monitored = run()
    return Trace(batch_loss.numpy(), epoch_loss.numpy(), monitored.numpy())
