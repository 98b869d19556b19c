"""Shared fixtures: a writable Keras cache is expected in KERAS_HOME (see .ci/run).

The strategy, precision and determinism come from FTUTILS_STRATEGY / FTUTILS_PRECISION /
FTUTILS_DETERMINISTIC, chosen before any test starts TensorFlow: `make test-distributed`
runs the same tests under ``mirrored:2`` and ``mixed_bfloat16``.
"""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def pytest_configure(config):
    from ftutils import distribute

    distribute.configure()


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same seeds, under the configured precision and determinism."""
    import keras

    from ftutils import distribute

    chosen = distribute.settings()
    distribute.configure(chosen.strategy, chosen.precision, chosen.deterministic)
    keras.utils.set_random_seed(0)


@pytest.fixture
def float32_policy():
    """Compute in float32 whatever the configured policy, for tests of exact identities.

    A from-scratch formula checked against Keras to 1e-5, or "the identity at inference",
    is a statement about the arithmetic in float32; under ``mixed_bfloat16`` (3 significant
    digits) it holds only to bfloat16's rounding. The rest of the suite runs in the
    configured policy.
    """
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy(previous)
