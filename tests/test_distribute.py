"""The tf.distribute and mixed-precision path, exercised on the CPU (GPU-shaped, not GPU-bound).

A MirroredStrategy over two logical CPU devices stands in for two GPUs, and the
``mixed_bfloat16`` policy for a GPU's ``mixed_float16``. A strategy is chosen once per
process (splitting the CPU must happen before TensorFlow starts), so those comparisons run
in fresh interpreters. Nothing here asserts which strategy the host itself picks: the
tests pass on a CPU, a GPU or a multi-GPU host.
"""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework import config as tf_config  # no public getter

import ftutils
from ftutils import config, data, distribute, training


def _run(script: str, **env: str) -> str:
    """Run ``script`` in a fresh interpreter with extra environment variables; its stdout."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=400,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


MIRRORED = """
    import numpy as np
    import ftutils
    ftutils.setup(strategy="mirrored:2", precision="float32", verbose=False)
    import tensorflow as tf
    from ftutils import backbones, config, data, distribute, frozen, models, training
    from ftutils.scratch.optimizers import gradient_descent

    rng = np.random.default_rng(0)
    labels = np.arange(64) % 4
    images = rng.integers(0, 64, (64, 32, 32, 3)) + 64 * labels[:, None, None, None]
    toy = data.ImageData(images.astype(np.uint8), labels, ("a", "b", "c", "d"))  # learnable

    def losses(devices):
        config.set_seed(0)
        with devices.scope():
            model = models.build_classifier("mobilenet_v2", 4, 32, dropout=0)
        backbones.unfreeze(models.base_of(model), from_layer="block_16_expand")
        training.compile_classifier(model, "sgd", 1e-3)
        # per-replica batch 16 on two replicas is the one device's batch of 32
        per_replica = 32 // distribute.replicas(model)
        history = model.fit(data.make_dataset(toy, 32, 32), epochs=3, shuffle=False, verbose=0)
        return distribute.replicas(model), history.history["loss"], per_replica

    two, mirrored, per_replica = losses(distribute.strategy())
    one, single, _ = losses(tf.distribute.OneDeviceStrategy("/cpu:0"))
    print("replicas", two, one)
    print("mirrored", *mirrored)
    print("single", *single)

    # a model derived from a mirrored classifier compiles and trains under its strategy
    model = models.build_classifier("mobilenet_v2", 4, 32)
    backbones.unfreeze(models.base_of(model), from_layer="block_16_expand")
    split = frozen.cut(model, "block_16_expand")
    training.compile_classifier(split.upper, "adam", 1e-3)
    acts = frozen.activations(split.lower, toy)
    frozen.fit_steps(split.upper, acts, toy.labels, steps=2)
    print("upper", type(split.upper.distribute_strategy).__name__,
          int(split.upper.optimizer.iterations.numpy()))
    head = models.build_head(1280, 4)
    training.compile_classifier(head)
    print("head", type(head.distribute_strategy).__name__)
    print("extractor", type(frozen.cut(model).lower.distribute_strategy).__name__)
    try:  # the article's from-scratch loop has no replicas to synchronise
        gradient_descent(lambda x, y: head(x)[0, 0], head.trainable_variables,
                         tf.keras.optimizers.SGD(0.1), np.zeros((2, 1280), "float32"),
                         np.zeros(2, "int64"), epochs=1)
    except ftutils.DistributionError as exc:
        print("scratch refused", "outside" in str(exc))
    training.compile_classifier(model)
    odd = toy.take(np.arange(25))  # a last batch that does not split evenly over 2 replicas
    training.fit_classifier(model, odd, odd, epochs=1, batch_size=8, verbose=2)
    print("odd batch trained")
"""


@pytest.mark.own_strategy
def test_two_replica_mirrored_fit_matches_one_device_and_derived_models_train():
    out = _run(MIRRORED).splitlines()
    lines = {line.split()[0]: line.split()[1:] for line in out if line.split()}
    assert lines["replicas"] == ["2", "1"]
    mirrored = np.array(lines["mirrored"], dtype=float)
    single = np.array(lines["single"], dtype=float)
    assert mirrored[-1] < mirrored[0]  # it trained: the comparison is not of two constants
    np.testing.assert_allclose(mirrored, single, rtol=1e-3)
    # the defect this guards: the split classifier's upper part failed to compile and fit
    assert lines["upper"] == ["MirroredStrategy", "2"]
    assert lines["head"] == ["MirroredStrategy"]
    assert lines["extractor"] == ["MirroredStrategy"]  # features are computed on every replica
    assert lines["scratch"] == ["refused", "True"]
    assert "batch: 8 per replica x 2 replicas = 16" in out
    assert "odd batch trained" in out  # TF 2.21 + Keras 3.15 fail on it unless trimmed


MIXED = """
    import numpy as np
    import ftutils
    ftutils.setup(precision="mixed_bfloat16", verbose=False)
    from ftutils import config, data, frozen, models

    rng = np.random.default_rng(0)
    toy = data.ImageData(rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8),
                         np.arange(8) % 4, ("a", "b", "c", "d"))
    model = models.build_classifier("mobilenet_v2", 4, 32)
    print("policy", model.get_layer("pool").compute_dtype)
    print("output", model(toy.images.astype("float32")).dtype.name)
    print("features", frozen.extract_features(model, toy).dtype)
    split = frozen.cut(model, "block_16_expand")
    print("activations", frozen.activations(split.lower, toy).dtype)
    print("head", models.build_head(1280, 4)(np.zeros((1, 1280), "float32")).dtype.name)
    print("upper", split.upper(frozen.activations(split.lower, toy)).dtype.name)
    ftutils.setup(precision="float32", verbose=False)  # the same images in float32
    model32 = models.build_classifier("mobilenet_v2", 4, 32)
    frozen.extract_features(model32, toy)
    print("cached", len(list((config.CACHE_DIR / "activations").glob("feature_extractor-*.npy"))))
"""


@pytest.mark.own_strategy
def test_mixed_precision_outputs_and_cached_features_are_float32(tmp_path):
    out = _run(MIXED, FTUTILS_CACHE=str(tmp_path)).splitlines()
    lines = dict(line.split(maxsplit=1) for line in out)
    assert lines["policy"] == "bfloat16"  # the base really computes in bfloat16
    for name in ("output", "features", "activations", "head", "upper"):
        assert lines[name] == "float32", (name, lines[name])
    assert lines["cached"] == "2"  # the policy is part of the cache key: no stale reuse


def test_setup_reports_the_configured_strategy_precision_and_determinism():
    summary = ftutils.setup(verbose=False)
    chosen = distribute.strategy()
    assert summary["replicas"] == chosen.num_replicas_in_sync >= 1
    assert summary["strategy"].startswith(type(chosen).__name__)
    assert summary["precision"] == keras.mixed_precision.global_policy().name
    assert summary["deterministic"] == tf_config.is_op_determinism_enabled()


def test_global_batch_is_per_replica_batch_times_replicas():
    assert distribute.global_batch(32) == 32 * distribute.replicas()
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])  # default strategy
    assert distribute.global_batch(32, model) == 32


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strategy": "mirrored"}, "unknown strategy 'mirrored'"),
        ({"strategy": "mirrored:0"}, "mirrored:N"),
        ({"precision": "float16"}, "unknown precision 'float16'"),
    ],
)
def test_bad_settings_are_refused_with_the_choices(kwargs, message):
    with pytest.raises(ftutils.DistributionError, match=message):
        distribute.configure(**kwargs)


def test_another_strategy_in_the_same_process_is_refused():
    chosen = distribute.settings().strategy
    other = "mirrored:3" if chosen != "mirrored:3" else "default"
    with pytest.raises(ftutils.DistributionError, match="restart the kernel"):
        distribute.configure(strategy=other)
    assert distribute.settings().strategy == chosen


def test_multiworker_without_tf_config_says_what_to_set(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ftutils.DistributionError, match="TF_CONFIG"):
        distribute.make_strategy("multiworker")


def test_an_op_without_a_deterministic_kernel_names_the_switch():
    """tf.timestamp refuses to run under op determinism, as a GPU op without a
    deterministic kernel does; the error must say how to turn determinism off."""
    tf.config.experimental.enable_op_determinism()
    config.set_seed(0)
    with distribute.strategy().scope():
        model = keras.Sequential(
            [
                keras.Input((4, 4, 3)),
                keras.layers.Lambda(lambda x: x + 0 * tf.cast(tf.timestamp(), x.dtype)),
                keras.layers.Flatten(),
                keras.layers.Dense(2, activation="softmax", dtype="float32"),
            ]
        )
    training.compile_classifier(model, "sgd", 0.1)
    toy = data.ImageData(np.zeros((4, 4, 4, 3), np.uint8), np.arange(4) % 2, ("a", "b"))
    with pytest.raises(ftutils.DistributionError, match="FTUTILS_DETERMINISTIC=0"):
        training.fit_classifier(model, toy, toy, epochs=1, verbose=0)


def test_determinism_can_be_switched_off_and_on():
    chosen = distribute.settings()
    try:
        distribute.configure(chosen.strategy, chosen.precision, deterministic=False)
        assert not tf_config.is_op_determinism_enabled()
        distribute.configure(chosen.strategy, chosen.precision, deterministic=True)
        assert tf_config.is_op_determinism_enabled()
    finally:
        distribute.configure(chosen.strategy, chosen.precision, chosen.deterministic)
