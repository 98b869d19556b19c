"""The hand-built AlexNet (§4.1): the paper's layers and parameter count, small sizes, registry."""

import keras
import numpy as np
import pytest

from ftutils import alexnet, architecture, backbones, models
from ftutils.errors import BackboneError, WeightsUnavailableError


@pytest.fixture(scope="module")
def paper_model():
    return alexnet.AlexNet()


def test_paper_configuration_layer_counts(paper_model):
    counts = architecture.count_layers(paper_model)
    assert (counts["conv"], counts["max-pool"], counts["dense"]) == (5, 3, 3)
    assert counts["dropout"] == 2
    assert counts["batch-norm"] == 0


def test_paper_configuration_parameters_and_shapes(paper_model):
    # Krizhevsky et al. 2012, two GPU groups: 60,965,224 parameters ("60 million").
    assert paper_model.count_params() == 60_965_224
    table = architecture.layer_table(paper_model).set_index("layer")
    assert [table.loc[name, "output"] for name in ("conv1", "pool1", "pool2", "pool5")] == [
        "55x55x96",
        "27x27x96",
        "13x13x256",
        "6x6x256",
    ]
    assert table.loc["fc6", "parameters"] == 6 * 6 * 256 * 4096 + 4096
    assert paper_model.output_shape == (None, 1000)


def test_dropout_sits_after_the_first_two_dense_layers(paper_model):
    table = architecture.layer_table(paper_model, kinds=("dropout",))
    assert table["depth"].tolist() == [6, 7]  # weighted layers 6 and 7 = fc6, fc7
    assert table["detail"].tolist() == ["rate 0.5", "rate 0.5"]


def test_one_tower_variant_parameters():
    assert alexnet.AlexNet(groups=1).count_params() == 62_378_344


def test_feature_size_and_minimum_input():
    assert [alexnet.feature_size(s) for s in (66, 67, 99, 227)] == [0, 1, 2, 6]
    with pytest.raises(BackboneError, match="at least 67 px"):
        alexnet.AlexNet((64, 64, 3))


def test_small_configuration_builds_and_trains_one_step():
    model = alexnet.AlexNet((67, 67, 3), classes=5, width=0.5, fc_units=256, groups=1)
    assert architecture.count_layers(model)["conv"] == 5
    assert model.get_layer("conv1").filters == 48
    assert model.output_shape == (None, 5)
    convs = 17_472 + 153_728 + 221_376 + 331_968 + 221_312  # 48, 128, 192, 192, 128 filters
    dense = (128 * 256 + 256) + (256 * 256 + 256) + (256 * 5 + 5)  # pool5 is 1x1x128 at 67 px
    assert model.count_params() == convs + dense
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).uniform(-1, 1, (4, 67, 67, 3)).astype("float32")
    before = model.get_layer("conv1").kernel.numpy().copy()
    model.train_on_batch(x, np.arange(4))
    assert not np.array_equal(model.get_layer("conv1").kernel.numpy(), before)


def test_local_response_normalization_matches_the_formula(float32_policy):
    a = np.random.default_rng(0).uniform(0, 3, (1, 2, 2, 7)).astype("float32")
    layer = alexnet.LocalResponseNormalization()
    expected = np.empty_like(a)
    for i in range(7):
        window = a[..., max(0, i - 2) : i + 3]
        expected[..., i] = a[..., i] / (2.0 + 1e-4 * (window**2).sum(-1)) ** 0.75
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(a)), expected, rtol=1e-5)


def test_bad_arguments():
    with pytest.raises(WeightsUnavailableError, match="no ImageNet weights exist for AlexNet"):
        alexnet.AlexNet(weights="imagenet")
    with pytest.raises(BackboneError, match="groups must be 1"):
        alexnet.AlexNet(groups=3)


def test_registry_entry_builds_the_base_and_never_downloads(monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("imagenet_weights_path tried to download AlexNet weights")

    monkeypatch.setattr(keras.utils, "get_file", no_download)
    with pytest.raises(WeightsUnavailableError, match="'alexnet'.*no ImageNet weights exist"):
        backbones.imagenet_weights_path("alexnet")
    with pytest.raises(WeightsUnavailableError):
        models.build_classifier("alexnet", 5, 67)  # default weights="imagenet"
    base = backbones.get_base("alexnet", 67, weights=None)
    assert base.output_shape == (None, 1, 1, 256)
    assert architecture.count_layers(base)["dense"] == 0  # include_top=False: no FC layers
    with pytest.raises(BackboneError, match=r"not usable for alexnet.*pixels >= 67"):
        backbones.get_base("alexnet", 32, weights=None)


def test_other_registry_entries_keep_their_weights_files():
    named = {name: entry.weights_file for name, entry in backbones.BACKBONES.items()}
    assert named.pop("alexnet") is None
    assert all(isinstance(f, str) and f.endswith(".h5") for f in named.values())
