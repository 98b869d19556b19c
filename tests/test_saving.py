"""Saving a fine-tuned classifier to .keras and loading it back (§4.4, "merge" the models).

ImageNet weights at 32 px (from the offline Keras cache) rather than random ones: a randomly
initialised MobileNetV2's features vanish (~1e-13), so every image would get the same,
uniform prediction and "identical predictions" would prove nothing.
"""

import keras
import numpy as np

from ftutils import augment, backbones, models


def test_a_fine_tuned_classifier_with_augmentation_reloads_with_identical_predictions(tmp_path):
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
    reloaded = keras.saving.load_model(path)  # no custom_objects: the layers are registered

    np.testing.assert_array_equal(reloaded.predict(images, verbose=0), before)
    assert [layer.name for layer in reloaded.layers] == [layer.name for layer in model.layers]
    assert models.trainable_summary(reloaded) == models.trainable_summary(model)
    base = models.base_of(reloaded)
    batch_norms = [
        layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert batch_norms and not any(layer.trainable for layer in batch_norms)
    assert base.get_layer("block_16_expand").trainable and not base.get_layer("Conv1").trainable
