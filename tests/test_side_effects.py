"""A library call leaves the caller's process state alone: precision, determinism, seeds.

Only ``ftutils.setup()`` (``distribute.configure``) chooses them; every other call reads them.
"""

import os
import random
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from ftutils import config, frozen, recipe
from ftutils import using as ftutils_using
from tests.test_recipe import SIZE, _toy

ROOT = Path(__file__).resolve().parent.parent

_CALLER_WITHOUT_SETUP = """
import keras
from tensorflow.python.framework import config as tf_config
from ftutils import distribute, frozen, models
from ftutils.data import ImageData
import numpy as np

keras.mixed_precision.set_global_policy("mixed_bfloat16")
head = models.build_head(8, 3)
model = models.build_classifier("mobilenet_v2", 3, 32, weights=None)
images = ImageData(np.zeros((4, 32, 32, 3), "uint8"), np.arange(4) % 3, ("a", "b", "c"))
features = frozen.activations(frozen.cut(model).lower, images)
print("policy", keras.mixed_precision.global_policy().name)
print("deterministic", tf_config.is_op_determinism_enabled())
print("head", head.layers[-1].dtype_policy.name, "settings", distribute.settings())
"""


def test_library_calls_without_setup_keep_the_callers_precision_and_determinism(tmp_path):
    """build_head, build_classifier and activations used to configure the process: the
    caller's mixed_bfloat16 became float32 and op determinism was switched on."""
    env = {**os.environ, "FTUTILS_CACHE": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "3"}
    for name in ("FTUTILS_PRECISION", "FTUTILS_STRATEGY", "FTUTILS_DETERMINISTIC"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-c", _CALLER_WITHOUT_SETUP],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "policy mixed_bfloat16" in done.stdout
    assert "deterministic False" in done.stdout
    assert "precision='mixed_bfloat16'" in done.stdout  # settings() reads, it does not choose


def _draws() -> list:
    return [
        random.random(),
        float(np.random.rand()),
        float(keras.random.uniform(())),
        float(tf.random.uniform(())),
    ]


def test_seeded_blocks_leave_every_generator_where_it_was():
    config.set_seed(5)
    expected = _draws()
    config.set_seed(5)
    with config.seeded(1):
        inside = _draws()
    assert _draws() == expected
    config.set_seed(1)
    assert _draws() == inside  # the block ran as after set_seed(1)


def test_the_feature_ensemble_does_not_reseed_its_caller(tmp_path, monkeypatch):
    """It used to leave every generator seeded for its last head, whatever the caller's seed:
    two callers with different seeds then drew the same numbers after it."""
    monkeypatch.setattr(frozen, "CACHE_DIR", tmp_path)
    train, val = _toy(), _toy(seed=1)
    after = []
    for caller_seed in (5, 6):
        config.set_seed(caller_seed)
        recipe.feature_ensemble(train, val, image_size=SIZE, heads=1, epochs=1)
        after.append(_draws())
    assert all(a != b for a, b in zip(*after, strict=True)), after


def test_using_sets_precision_determinism_and_seeds_for_its_block_only():
    from tensorflow.python.framework import config as tf_config

    from ftutils import distribute, models

    policy, determinism = keras.mixed_precision.global_policy().name, distribute._op_determinism()
    other_policy = "mixed_bfloat16" if policy != "mixed_bfloat16" else "float32"
    config.set_seed(3)
    expected = _draws()
    config.set_seed(3)
    with ftutils_using(precision=other_policy, deterministic=not determinism, seed=7) as chosen:
        assert chosen.precision == other_policy and chosen.deterministic == (not determinism)
        assert distribute.settings() == chosen
        inside = _draws()
        head = models.build_head(8, 3)
        assert head.layers[0].dtype_policy.name == other_policy  # built under the block's policy
    assert keras.mixed_precision.global_policy().name == policy
    assert bool(tf_config.is_op_determinism_enabled()) == determinism
    assert _draws() == expected  # the caller's generators were not moved by the block
    config.set_seed(7)
    assert _draws() == inside


def test_using_enters_the_callers_strategy_and_refuses_a_name():
    import pytest

    from ftutils import distribute
    from ftutils.errors import DistributionError

    one_device = tf.distribute.OneDeviceStrategy("/cpu:0")
    with ftutils_using(strategy=one_device):
        assert distribute.current() is one_device
    assert distribute.current() is not one_device
    with pytest.raises(DistributionError, match="tf.distribute.Strategy"):
        with ftutils_using(strategy="mirrored:2"):
            pass
    with pytest.raises(DistributionError, match="unknown precision"):
        with ftutils_using(precision="float16"):
            pass
