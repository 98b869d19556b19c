"""Counting an architecture from the model itself (§4.1-§4.3)."""

import keras
import matplotlib
import pytest

from ftutils import architecture, models

matplotlib.use("Agg")


def _toy():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization()(x)
    y = keras.layers.Conv2D(4, 1)(x)
    x = keras.layers.Add()([x, y])
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Reshape((16, 4))(x)
    x = keras.layers.MultiHeadAttention(num_heads=1, key_dim=2)(x, x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    x = keras.layers.Dropout(0.5)(x)
    outputs = keras.layers.Dense(3)(x)
    return keras.Model(inputs, outputs)


def test_count_layers_by_kind():
    counts = architecture.count_layers(_toy())
    assert counts == {
        "conv": 2,
        "dense": 1,
        "max-pool": 1,
        "avg-pool": 0,
        "global-pool": 0,  # GlobalAveragePooling1D is not a 2-D global pool
        "dropout": 1,
        "batch-norm": 1,
        "attention": 1,
        "add": 1,
        "other": 2,  # Reshape, GlobalAveragePooling1D
    }


def test_layer_table_depth_and_detail():
    table = architecture.layer_table(_toy(), kinds=("conv", "dense", "dropout"))
    assert table["depth"].tolist() == [1, 2, 2, 3]
    assert table["detail"].tolist() == ["3x3, 4", "1x1, 4", "rate 0.5", "3"]
    assert table["parameters"].tolist() == [3 * 3 * 3 * 4 + 4, 4 * 4 + 4, 0, 4 * 3 + 3]


def test_vgg16_counts():
    model = keras.applications.VGG16(weights=None, input_shape=(32, 32, 3), classes=5)
    counts = architecture.count_layers(model)
    assert (counts["conv"], counts["max-pool"], counts["dense"], counts["dropout"]) == (13, 5, 3, 0)
    convs = architecture.layer_table(model, kinds=("conv",))
    assert set(convs["detail"].str.split(",").str[0]) == {"3x3"}


def test_resnet50_stages_and_counts():
    model = keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=5)
    assert architecture.residual_stages(model) == {2: 3, 3: 4, 4: 6, 5: 3}
    counts = architecture.count_layers(model)
    assert (counts["conv"], counts["dense"], counts["add"]) == (53, 1, 16)
    assert (counts["attention"], counts["dropout"], counts["max-pool"]) == (0, 0, 1)
    assert len(architecture.block_layers(model, "conv3_block1")) == 12
    architecture.plot_residual_block(model, "conv3_block1")  # draws without error (Agg)
    with pytest.raises(ValueError, match="no block 'conv9_block1'"):
        architecture.block_layers(model, "conv9_block1")


def test_nested_base_is_expanded():
    model = models.build_classifier("mobilenet_v2", 3, 32, weights=None)
    counts = architecture.count_layers(model)
    assert counts["conv"] == 52 and counts["dense"] == 1 and counts["dropout"] == 1
    with pytest.raises(ValueError, match="no layers named conv<stage>_block"):
        architecture.residual_stages(model)
