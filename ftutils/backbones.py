"""Pretrained convolutional bases from ``keras.applications`` (§4, §4.4).

Each entry knows its constructor, its input scaling (``keras.applications``' own
``preprocess_input``, as a standard Keras layer), the smallest input it accepts and the
ImageNet no-top weights file in Keras' cache. Weights are loaded from that file into a
base built at *any* input size (a convolutional base's weights do not depend on it), so one
cached 224-px file serves 96-px notebooks; online, the same call downloads the file first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import sys
import types
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import keras
import numpy as np

from ftutils import alexnet, batchnorm, downloads
from ftutils.config import keras_home
from ftutils.errors import BackboneError, WeightsUnavailableError

_KERAS_APPS = "https://storage.googleapis.com/tensorflow/keras-applications/"


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """How to build one backbone and where its ImageNet weights live (``None``: none exist).

    ``scaling`` is what the backbone's ``keras.applications`` ``preprocess_input`` does to
    [0, 255] RGB: ``"tf"`` (to [-1, 1]), ``"caffe"`` (RGB to BGR, ImageNet mean subtracted) or
    ``"none"`` (the model rescales inside). ``weights_hash``: the file's SHA-256 (64 hex
    digits) or MD5 (32, Keras' own), checked after a download. ``imagenet_graph``: the
    constructor builds another network for ``weights="imagenet"`` than for ``weights=None``
    (EfficientNet adds a ``Rescaling`` after its ``Normalization``), so ImageNet weights are
    loaded by Keras' own ``weights="imagenet"`` code path.
    """

    constructor: Callable[..., keras.Model]
    scaling: str
    min_size: int
    default_size: int
    weights_file: str | None
    weights_url: str
    download_mb: int
    weights_hash: str | None = None
    kwargs: dict = dataclasses.field(default_factory=dict)
    imagenet_graph: bool = False


# Hashes: SHA-256 of the official MobileNet files (no hash is published in keras.applications);
# MD5 for VGG16, ResNet50 and EfficientNetB0 as keras/src/applications/{vgg16,resnet,
# efficientnet}.py pass them to get_file.
BACKBONES: dict[str, BackboneSpec] = {
    "mobilenet": BackboneSpec(
        keras.applications.MobileNet, "tf", 32, 224, "mobilenet_1_0_224_tf_no_top.h5",
        _KERAS_APPS + "mobilenet/", 17,
        "d9140c7e6e85495e5ab848b28cebe696bdfa7f899ab698ba787e6e979856ea41", {"alpha": 1.0},
    ),
    "mobilenet_025": BackboneSpec(
        keras.applications.MobileNet, "tf", 32, 224, "mobilenet_2_5_224_tf_no_top.h5",
        _KERAS_APPS + "mobilenet/", 1,
        "127a952d2d2d078c4c3fc95112abb7cdf54357639ef346d9ff8fcf79f31e5de7", {"alpha": 0.25},
    ),
    "mobilenet_v2": BackboneSpec(
        keras.applications.MobileNetV2, "tf", 32, 224,
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
        _KERAS_APPS + "mobilenet_v2/", 9,
        "71e4c4ec4aa24c9c951b9265d6de42e1336dcf614c2214fa6a989208615e232c",
    ),
    "vgg16": BackboneSpec(
        keras.applications.VGG16, "caffe", 32, 224,
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", _KERAS_APPS + "vgg16/", 59,
        "6d6bbae143d832006294945121d1f1fc",
    ),
    "resnet50": BackboneSpec(
        keras.applications.ResNet50, "caffe", 32, 224,
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5", _KERAS_APPS + "resnet/", 95,
        "4d473c1dd8becc155b73f8504c6f6626",
    ),
    "efficientnet_b0": BackboneSpec(
        keras.applications.EfficientNetB0, "none", 32, 224, "efficientnetb0_notop.h5",
        "https://storage.googleapis.com/keras-applications/", 17,
        "50bc09e76180e00e4465e1a485ddc09d", imagenet_graph=True,
    ),
    # hand-built (ftutils.alexnet): no ImageNet weights in Keras. Scaled to [-1, 1]: the
    # paper subtracts its mean training image, which a model pretrained here does not have
    "alexnet": BackboneSpec(
        alexnet.AlexNet, "tf", alexnet.MIN_SIZE, alexnet.PAPER_SIZE, None, "", 0, None,
        {"groups": 1},  # one tower: the paper's 2-GPU split is 2x slower on a CPU
    ),
}  # fmt: skip

#: ImageNet's mean pixel in BGR order, as ``preprocess_input(mode="caffe")`` subtracts it
#: (keras/src/applications/imagenet_utils.py).
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def spec(name: str) -> BackboneSpec:
    """The registry entry for ``name``, or an error listing the known names."""
    if name not in BACKBONES:
        raise BackboneError(
            f"unknown backbone {name!r}; known backbones: {', '.join(sorted(BACKBONES))}"
        )
    return BACKBONES[name]


def imagenet_weights_path(name: str) -> Path:
    """The ImageNet no-top weights file for ``name``: from the Keras cache, else downloaded.

    A download is checked against the file's published hash; a truncated or corrupted one is
    deleted. Raises :class:`WeightsUnavailableError` naming the file and how to provide it.
    """
    entry = spec(name)
    if entry.weights_file is None:
        raise WeightsUnavailableError(f"{name!r}: {alexnet.NO_WEIGHTS}")
    cached = keras_home() / "models" / entry.weights_file
    if cached.is_file():
        downloads.note_used(cached)
        return cached
    print(
        f"{entry.weights_file} is not in the Keras cache: downloading it (~{entry.download_mb} MB)"
    )
    try:
        # Keras' own URL line and progress bar are not printed; a stalled connection fails
        with contextlib.redirect_stdout(io.StringIO()), downloads.timeout():
            path = Path(
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
    if entry.weights_hash is not None and file_hash(path, entry.weights_hash) != entry.weights_hash:
        path.unlink()
        raise WeightsUnavailableError(
            f"the downloaded {path.name} does not match its published hash (a truncated or "
            "corrupted download); it was deleted: run again to download it anew, or copy the "
            "file into $KERAS_HOME/models/ from a machine that has it"
        )
    downloads.note_used(path)
    return path


def file_hash(path: Path, like: str) -> str:
    """The hex digest of ``path`` in the algorithm of ``like``: SHA-256 for 64 hex digits,
    else MD5 (the hashes ``keras.applications`` publishes)."""
    digest = hashlib.sha256() if len(like) == 64 else hashlib.md5()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_image_size(name: str, image_size: int | None) -> int:
    """``image_size``, or the backbone's default for ``None``; a clear error below its minimum."""
    entry = spec(name)
    if image_size is None:
        return entry.default_size
    if not isinstance(image_size, int | np.integer) or image_size < entry.min_size:
        raise BackboneError(
            f"input size {image_size!r} is not usable for {name}: give a whole number of "
            f"pixels >= {entry.min_size} (its minimum), e.g. {entry.default_size}, or None for "
            "that default (images are resized by ftutils.data.make_dataset)"
        )
    return int(image_size)


def get_base(
    name: str,
    image_size: int | None = None,
    weights: str | Path | None = "imagenet",
) -> keras.Model:
    """A convolutional base without its classifier, built at ``image_size`` (square, RGB).

    ``weights``: ``"imagenet"``, ``None`` (random initialisation) or a path to a weights file
    (``.weights.h5`` or Keras' ``.h5``) of this backbone. With ``"imagenet"`` the network is
    the one ``keras.applications`` builds for ``weights="imagenet"``; with ``None`` or a path,
    the one it builds for ``weights=None``.
    """
    entry = spec(name)
    size = check_image_size(name, image_size)
    if weights == "imagenet" and entry.imagenet_graph:
        return _keras_imagenet_base(name, size)
    base = entry.constructor(
        input_shape=(size, size, 3), include_top=False, weights=None, **entry.kwargs
    )
    if weights is not None:
        path = imagenet_weights_path(name) if weights == "imagenet" else Path(weights)
        _load_weights(base, path, name)
    return base


def _keras_imagenet_base(name: str, size: int) -> keras.Model:
    """``keras.applications``' own ``weights="imagenet"`` network, reading the checked file.

    Keras adds some layers only for ``weights="imagenet"`` (EfficientNet's
    ``Rescaling(1/sqrt(stddev))``, tensorflow/tensorflow#49930). Its constructor then asks
    ``file_utils.get_file`` for the file; for the length of the call that module name, in the
    constructor's module only, answers with the file :func:`imagenet_weights_path` found or
    downloaded and checked, so the same cache and errors apply as for every other backbone.
    """
    entry = spec(name)
    path = imagenet_weights_path(name)
    module = sys.modules[entry.constructor.__module__]
    checked_file = types.SimpleNamespace(get_file=lambda *args, **kwargs: str(path))
    try:
        with mock.patch.object(module, "file_utils", checked_file):
            return entry.constructor(
                input_shape=(size, size, 3), include_top=False, weights="imagenet", **entry.kwargs
            )
    except (OSError, ValueError) as exc:
        raise WeightsUnavailableError(_not_weights_message(path, name, exc)) from None


def _not_weights_message(path: Path, name: str, exc: Exception) -> str:
    return (
        f"{path} is not a weights file for a {name} base ({type(exc).__name__}: "
        f"{str(exc).splitlines()[0][:200]}); if it came from a download, delete it so it "
        "downloads again, or give a file saved with model.save_weights from this backbone"
    )


def _load_weights(base: keras.Model, path: Path, name: str) -> None:
    """``base.load_weights(path)``, failing with the file's name instead of h5py's message."""
    if not path.is_file():
        raise WeightsUnavailableError(
            f"weights file {path} does not exist; give the path of a weights file saved from "
            f"a {name} base (model.save_weights), 'imagenet', or None for random weights"
        )
    try:
        base.load_weights(path)
    except (OSError, ValueError) as exc:
        raise WeightsUnavailableError(_not_weights_message(path, name, exc)) from None


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


def preprocessing(name: str) -> keras.Layer:
    """The backbone's ``preprocess_input`` as one standard Keras layer named ``preprocess``.

    Standard layers only, so a saved classifier loads with plain ``keras.saving.load_model``
    in any process, without ftutils. ``"tf"`` scaling is ``Rescaling(1/127.5, offset=-1)``;
    ``"caffe"`` is a fixed, non-trainable ``Dense(3)`` on the channel axis whose kernel swaps
    RGB to BGR and whose bias subtracts the ImageNet mean (exactly ``preprocess_input``'s
    result: each output is one input channel plus a constant). It computes in float32 under
    any precision policy: bfloat16 would round pixel values before the base sees them.
    """
    scaling = spec(name).scaling
    if scaling == "tf":
        return keras.layers.Rescaling(1 / 127.5, offset=-1.0, dtype="float32", name="preprocess")
    if scaling == "caffe":
        return keras.layers.Dense(
            3,
            kernel_initializer=keras.initializers.Constant(np.eye(3)[:, ::-1]),  # RGB -> BGR
            bias_initializer=keras.initializers.Constant(-np.array(CAFFE_MEAN_BGR)),
            trainable=False,
            dtype="float32",
            name="preprocess",
        )
    return keras.layers.Identity(dtype="float32", name="preprocess")
