"""Saving a fine-tuned classifier to .keras and loading it anywhere (§4.4, "merge" the models).

ImageNet weights at 32 px (from the offline Keras cache) rather than random ones: a randomly
initialised MobileNetV2's features vanish (~1e-13), so every image would get the same,
uniform prediction and "identical predictions" would prove nothing.
"""

import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from ftutils import augment, backbones, models


@pytest.fixture
def saved_classifier(tmp_path):
    """A classifier with augmentation and an unfrozen top, saved; its predictions on images."""
    model = models.build_classifier(
        "mobilenet_v2", 4, 32, augmentation=augment.augmentation(seed=0)
    )
    assert models.base_of(model).name.startswith("mobilenetv2")  # not the augmentation stack
    backbones.unfreeze(models.base_of(model), from_layer="block_16_expand")
    images = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3)).astype("float32")
    before = model.predict(images, verbose=0)
    assert np.ptp(before, axis=0).max() > 0.05  # images get different predictions
    path = tmp_path / "classifier.keras"
    model.save(path)
    np.save(tmp_path / "images.npy", images)
    return model, path, images, before


def test_a_fine_tuned_classifier_reloads_with_identical_predictions(saved_classifier):
    model, path, images, before = saved_classifier
    reloaded = keras.saving.load_model(path)

    np.testing.assert_array_equal(reloaded.predict(images, verbose=0), before)
    assert [layer.name for layer in reloaded.layers] == [layer.name for layer in model.layers]
    assert models.trainable_summary(reloaded) == models.trainable_summary(model)
    base = models.base_of(reloaded)
    batch_norms = [
        layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert batch_norms and not any(layer.trainable for layer in batch_norms)
    assert base.get_layer("block_16_expand").trainable and not base.get_layer("Conv1").trainable


def test_a_saved_classifier_loads_in_a_fresh_process_with_plain_keras(saved_classifier, tmp_path):
    """Only standard Keras layers: a deployed model needs neither ftutils nor custom_objects.

    The child process imports keras alone (and checks that ftutils was not imported); it runs
    in float32 on one device, so it is compared with a float32 prediction from here.
    """
    _, path, images, before = saved_classifier
    if keras.mixed_precision.global_policy().name != "float32":
        pytest.skip("the fresh process predicts in float32; this run's policy is not float32")
    child = textwrap.dedent(
        f"""
        import sys
        import keras, numpy as np
        model = keras.saving.load_model({str(path)!r})
        assert not any(name.startswith("ftutils") for name in sys.modules)
        np.save({str(tmp_path / "reloaded.npy")!r},
                model.predict(np.load({str(tmp_path / "images.npy")!r}), verbose=0))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_array_equal(np.load(tmp_path / "reloaded.npy"), before)
