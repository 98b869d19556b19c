"""Shared fixtures: a writable Keras cache is expected in KERAS_HOME (see .ci/run)."""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same seeds (and op determinism)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    tf.config.experimental.enable_op_determinism()
