"""Pretrained convolutional bases from ``keras.applications`` (§4, §4.4).

Each entry knows its constructor, its ``preprocess_input``, the smallest input it accepts and
the ImageNet no-top weights file in Keras' cache. Weights are loaded from that file into a
base built at *any* input size (a convolutional base's weights do not depend on it), so one
cached 224-px file serves 96-px notebooks; online, the same call downloads the file first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
from collections.abc import Callable
from pathlib import Path

import keras

from ftutils import alexnet, batchnorm
from ftutils.config import keras_home
from ftutils.errors import BackboneError, WeightsUnavailableError

_KERAS_APPS = "https://storage.googleapis.com/tensorflow/keras-applications/"


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone and where its ImageNet weights live (``None``: none exist)."""

    constructor: Callable[..., keras.Model]
    preprocess: Callable
    min_size: int
    default_size: int
    weights_file: str | None
    weights_url: str
    download_mb: int
    kwargs: dict = dataclasses.field(default_factory=dict)


BACKBONES: dict[str, BackboneSpec] = {
    "mobilenet": BackboneSpec(
        keras.applications.MobileNet,
        keras.applications.mobilenet.preprocess_input,
        32, 224, "mobilenet_1_0_224_tf_no_top.h5", _KERAS_APPS + "mobilenet/", 17,
        {"alpha": 1.0},
    ),
    "mobilenet_025": BackboneSpec(
        keras.applications.MobileNet,
        keras.applications.mobilenet.preprocess_input,
        32, 224, "mobilenet_2_5_224_tf_no_top.h5", _KERAS_APPS + "mobilenet/", 1,
        {"alpha": 0.25},
    ),
    "mobilenet_v2": BackboneSpec(
        keras.applications.MobileNetV2,
        keras.applications.mobilenet_v2.preprocess_input,
        32, 224, "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
        _KERAS_APPS + "mobilenet_v2/", 9,
    ),
    "vgg16": BackboneSpec(
        keras.applications.VGG16,
        keras.applications.vgg16.preprocess_input,
        32, 224, "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", _KERAS_APPS + "vgg16/", 59,
    ),
    "resnet50": BackboneSpec(
        keras.applications.ResNet50,
        keras.applications.resnet.preprocess_input,
        32, 224, "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        _KERAS_APPS + "resnet/", 95,
    ),
    "efficientnet_b0": BackboneSpec(
        keras.applications.EfficientNetB0,
        keras.applications.efficientnet.preprocess_input,
        32, 224, "efficientnetb0_notop.h5", "https://storage.googleapis.com/keras-applications/",
        17,
    ),
    "alexnet": BackboneSpec(  # hand-built (ftutils.alexnet): no ImageNet weights in Keras
        alexnet.AlexNet, alexnet.preprocess_input, alexnet.MIN_SIZE, alexnet.PAPER_SIZE,
        None, "", 0, {"groups": 1},  # one tower: the paper's 2-GPU split is 2x slower on a CPU
    ),
}  # fmt: skip


def spec(name: str) -> BackboneSpec:
    """The registry entry for ``name``, or an error listing the known names."""
    if name not in BACKBONES:
        raise BackboneError(
            f"unknown backbone {name!r}; known backbones: {', '.join(sorted(BACKBONES))}"
        )
    return BACKBONES[name]


def imagenet_weights_path(name: str) -> Path:
    """The ImageNet no-top weights file for ``name``: from the Keras cache, else downloaded.

    Raises :class:`WeightsUnavailableError` naming the file and how to provide it offline.
    """
    entry = spec(name)
    if entry.weights_file is None:
        raise WeightsUnavailableError(f"{name!r}: {alexnet.NO_WEIGHTS}")
    cached = keras_home() / "models" / entry.weights_file
    if cached.is_file():
        return cached
    print(
        f"{entry.weights_file} is not in the Keras cache: downloading it (~{entry.download_mb} MB)"
    )
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # Keras' own URL line and progress bar
            return Path(
                keras.utils.get_file(
                    entry.weights_file,
                    entry.weights_url + entry.weights_file,
                    cache_subdir="models",
                )
            )
    except Exception as exc:  # keras.utils.get_file raises a bare Exception offline
        raise WeightsUnavailableError(
            f"ImageNet weights for {name!r} ({entry.weights_file}, ~{entry.download_mb} MB) are "
            f"not in the Keras cache {cached.parent} and cannot be downloaded ({exc}). Online "
            "they download on first use. Offline, put the file into $KERAS_HOME/models/ (see "
            "the README, 'Offline use'), or build with weights=None."
        ) from None


def get_base(
    name: str,
    image_size: int | None = None,
    weights: str | Path | None = "imagenet",
) -> keras.Model:
    """A convolutional base without its classifier, built at ``image_size`` (square, RGB).

    ``weights``: ``"imagenet"``, ``None`` (random initialisation) or a path to a weights file.
    """
    entry = spec(name)
    size = image_size or entry.default_size
    if size < entry.min_size:
        raise BackboneError(
            f"input size {size} is below {name}'s minimum of {entry.min_size} px; use "
            f"image_size >= {entry.min_size} (images are resized by ftutils.data.make_dataset)"
        )
    base = entry.constructor(
        input_shape=(size, size, 3), include_top=False, weights=None, **entry.kwargs
    )
    if weights == "imagenet":
        base.load_weights(imagenet_weights_path(name))
    elif weights is not None:
        base.load_weights(weights)
    return base


def freeze(base: keras.Model) -> None:
    """Freeze every layer of the base (feature extraction, §4.4 step 1)."""
    base.trainable = False


def unfreeze(base: keras.Model, top_n: int | None = None, from_layer: str | None = None) -> int:
    """Make the top of the base trainable again, keeping every BatchNormalization frozen.

    Give ``top_n`` (the last n layers) or ``from_layer`` (that layer and all after it);
    neither unfreezes the whole base. BatchNormalization layers stay ``trainable=False`` so
    their moving statistics are not overwritten by small fine-tuning batches
    (``ftutils.batchnorm.keep_frozen``). Returns the number of trainable layers.
    """
    if top_n is not None and from_layer is not None:
        raise ValueError("give top_n or from_layer, not both")
    names = [layer.name for layer in base.layers]
    start = 0
    if top_n is not None:
        if top_n < 0:
            raise ValueError(f"top_n must be >= 0, got {top_n}")
        start = max(0, len(names) - top_n)
    elif from_layer is not None:
        if from_layer not in names:
            raise BackboneError(
                f"the base has no layer {from_layer!r}; its last layers are {names[-5:]}"
            )
        start = names.index(from_layer)
    base.trainable = True
    for index, layer in enumerate(base.layers):
        layer.trainable = index >= start
    batchnorm.keep_frozen(base)
    return sum(layer.trainable for layer in base.layers)


@keras.saving.register_keras_serializable(package="ftutils")
class BackbonePreprocess(keras.layers.Layer):
    """The backbone's own ``preprocess_input`` as a layer, so saved models carry it."""

    def __init__(self, backbone: str, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self._preprocess = spec(backbone).preprocess

    def call(self, inputs):
        return self._preprocess(inputs)

    def get_config(self) -> dict:
        return {**super().get_config(), "backbone": self.backbone}
