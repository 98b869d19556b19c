"""The tf.distribute path: a MirroredStrategy over two logical CPUs matches one device.

Logical devices must be configured before TensorFlow initialises, so the comparison runs
in a fresh interpreter.
"""

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    import numpy as np
    import keras

    from ftutils import config, data, distribute, training

    def train(devices):
        config.set_seed(0)
        chosen = distribute.strategy(devices)
        with chosen.scope():
            model = keras.Sequential([
                keras.Input((8, 8, 3)), keras.layers.Rescaling(1 / 255),
                keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax"),
            ])
            training.compile_classifier(model, "sgd", 0.1)
        rng = np.random.default_rng(0)
        toy = data.ImageData(rng.integers(0, 255, (64, 8, 8, 3), dtype=np.uint8),
                             np.arange(64) % 3, ("a", "b", "c"))
        # Unshuffled batches: the comparison is about the strategy, not the shuffle order.
        model.fit(data.make_dataset(toy, 8, batch_size=16), epochs=2, verbose=0)
        return type(chosen).__name__, model.get_weights()[0]

    name_two, two = train(["/cpu:0", "/cpu:1"])
    name_one, one = train(None)
    print(name_two, name_one, np.abs(two - one).max())
    assert name_two == "MirroredStrategy"
    np.testing.assert_allclose(two, one, atol=1e-5)
    assert np.abs(two).sum() > 0
    """
)


def test_mirrored_strategy_on_two_logical_cpus_matches_one_device():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("MirroredStrategy _DefaultDistributionStrategy")
