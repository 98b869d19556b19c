"""Device placement: one ``tf.distribute`` strategy for the whole book (GUIDE §2).

Several GPUs -> MirroredStrategy, one GPU -> OneDeviceStrategy, otherwise TensorFlow's
default strategy (the CPU). Models must be built and compiled inside ``strategy().scope()``.
"""

from __future__ import annotations

import functools

import tensorflow as tf


@functools.cache
def _auto_strategy() -> tf.distribute.Strategy:
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    if len(gpus) == 1:
        return tf.distribute.OneDeviceStrategy(gpus[0].name)
    return tf.distribute.get_strategy()


def strategy(devices: list[str] | None = None) -> tf.distribute.Strategy:
    """The strategy to build and train under.

    With ``devices`` (e.g. ``["/cpu:0", "/cpu:1"]``) a MirroredStrategy over exactly those
    devices; without, the best choice for the machine (chosen once, then reused).
    """
    if devices:
        return tf.distribute.MirroredStrategy(devices)
    return _auto_strategy()


def current() -> tf.distribute.Strategy:
    """The strategy whose scope is active, else :func:`strategy`'s choice for the machine.

    ftutils builds and compiles under this, so ``with strategy(devices).scope(): ...``
    around ftutils calls puts them on those devices.
    """
    return tf.distribute.get_strategy() if tf.distribute.has_strategy() else _auto_strategy()


def enable_mixed_precision_if_supported() -> bool:
    """Use float16 compute on GPUs with tensor cores (compute capability >= 7.0) only.

    On the CPU mixed precision is slower, so the float32 policy is kept. Returns whether
    mixed precision is now on. Classifier heads keep a float32 output layer either way.
    """
    import keras

    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        if capability and capability >= (7, 0):
            keras.mixed_precision.set_global_policy("mixed_float16")
            return True
    keras.mixed_precision.set_global_policy("float32")
    return False
