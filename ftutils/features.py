"""Cached feature extraction: the fast path for a frozen base (§2.2, §4.4).

A frozen base maps each image to the same features every epoch, so they are computed once
(and kept on disk, keyed by the model's weights and the images) and only the small head is
trained on them. This cannot be combined with random augmentation, which changes the images,
and so the features, every epoch.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from ftutils import distribute, models
from ftutils.config import CACHE_DIR
from ftutils.data import ImageData, check_labels, make_dataset
from ftutils.errors import BackboneError
from ftutils.training import TrainingRecord, callbacks, compile_classifier


def fingerprint(*arrays: np.ndarray) -> str:
    """A short content hash of arrays (shape, dtype and bytes)."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.shape}{array.dtype}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


#: Base layers whose pooled outputs make the multi-depth features (see :func:`feature_extractor`):
#: for MobileNetV2 the expansion activations of four inverted-residual blocks spread over its
#: depth and its last activation; for MobileNet the outputs of three pointwise convolutions.
#: Measured on the default task (bench/fast_path.py): about +0.05 test accuracy over
#: MobileNetV2's last layer alone.
MULTI_DEPTH_LAYERS = {
    "mobilenet_v2": (
        "block_6_expand_relu",
        "block_10_expand_relu",
        "block_13_expand_relu",
        "block_16_expand_relu",
        "out_relu",
    ),
    "mobilenet": ("conv_pw_7_relu", "conv_pw_11_relu", "conv_pw_13_relu"),
}

#: Extractors already built, per classifier and tap layers: building one and tracing its
#: predict step costs seconds, so repeated calls (train, val, test...) reuse it.
_EXTRACTORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def feature_extractor(model: keras.Model, layers: Sequence[str] | None = None) -> keras.Model:
    """The classifier up to its pooling layer, or its multi-depth features.

    With ``layers`` (names of layers in the base), the output is the global average of each
    of those layers' outputs, concatenated: features from several depths of the network,
    from generic edges and textures to ImageNet-specific parts (§2.2: the farther the
    target domain from the source, the more the middle layers carry). Augmentation is
    inactive at inference. Built once per classifier and layers, under the classifier's
    strategy, so extraction runs on all its replicas.
    """
    key = tuple(layers or ())
    built = _EXTRACTORS.setdefault(model, {})
    if key not in built:
        with distribute.scope_of(model):
            built[key] = _build_extractor(model, key)
    return built[key]


def _build_extractor(model: keras.Model, layers: tuple[str, ...]) -> keras.Model:
    if not layers:
        return keras.Model(model.inputs, model.get_layer("pool").output, name="feature_extractor")
    base = models.base_of(model)
    names = [layer.name for layer in base.layers]
    unknown = [name for name in layers if name not in names]
    if unknown:
        raise BackboneError(f"the base has no layer(s) {unknown}; its last layers are {names[-4:]}")
    taps = keras.Model(base.input, [base.get_layer(name).output for name in layers])
    image = keras.Input(model.input_shape[1:], name="image")
    outputs = taps(model.get_layer("preprocess")(image))
    pooled = [keras.layers.GlobalAveragePooling2D()(x) for x in outputs]
    features = keras.layers.Concatenate()(pooled) if len(pooled) > 1 else pooled[0]
    return keras.Model(image, features, name="multi_depth_features")


def extract_features(
    model: keras.Model,
    data: ImageData,
    batch_size: int = 64,
    use_disk_cache: bool = True,
    layers: Sequence[str] | None = None,
) -> np.ndarray:
    """Pooled base features of every image as float32, from the disk cache when computed before.

    ``layers``: multi-depth features instead (see :func:`feature_extractor`). Under a
    mixed-precision policy the base computes in float16 or bfloat16; the features are cast
    to float32 and the policy is part of the cache key. ``batch_size`` is per replica.
    """
    extractor = feature_extractor(model, layers)
    # Keyed by content, precision and library versions: an upgrade recomputes, as a teacher's
    # re-run expects, and features computed in bfloat16 never stand in for float32 ones.
    versions = f"{tf.__version__} {keras.__version__} {model.dtype_policy.name} {layers}"
    versions = np.frombuffer(versions.encode(), dtype=np.uint8)
    key = fingerprint(versions, *(w.numpy() for w in extractor.weights), data.images)
    path = CACHE_DIR / "features" / f"{model.name}-{model.input_shape[1]}px-{key}.npy"
    if use_disk_cache and path.is_file():
        return np.load(path)
    ds = make_dataset(data, model.input_shape[1], distribute.global_batch(batch_size, model))
    features = np.asarray(extractor.predict(ds, verbose=0), dtype="float32")
    if use_disk_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, features)
    return features


def train_head(
    train_features: np.ndarray,
    train: ImageData,
    val_features: np.ndarray,
    val: ImageData,
    epochs: int = 20,
    learning_rate: float = 1e-3,
    dropout: float = 0.2,
    batch_size: int = 32,
    record: TrainingRecord | None = None,
    verbose: int = 0,
    standardize: bool = False,
    patience: int | None = None,
) -> tuple[keras.Model, TrainingRecord]:
    """Train a new dense head on cached features; returns the head and its record.

    ``standardize`` puts a Normalization layer fitted to the training features first (for
    multi-depth features); ``patience`` stops early on validation loss and keeps the best
    epoch. ``batch_size`` is per replica; with several replicas, fewer images than there are
    replicas are left out of each pass (see ``ftutils.data.make_dataset``).
    """
    check_labels(val, train.n_classes)
    head = models.build_head(
        train_features.shape[1],
        train.n_classes,
        dropout,
        standardize_with=train_features if standardize else None,
    )
    compile_classifier(head, "adam", learning_rate)
    record = record if record is not None else TrainingRecord()
    replicas = distribute.replicas(head)
    n_train, n_val = (len(d) - len(d) % replicas for d in (train, val))
    with distribute.explain_determinism_errors():
        history = head.fit(
            train_features[:n_train],
            train.labels[:n_train],
            validation_data=(val_features[:n_val], val.labels[:n_val]),
            epochs=epochs,
            batch_size=distribute.global_batch(batch_size, head),
            callbacks=callbacks(patience),
            verbose=verbose,
        )
    record.add("head", history)
    return head, record


class CachedFeatureValidation(keras.callbacks.Callback):
    """Validate a :func:`ftutils.models.build_classifier` model on cached features (§3.5).

    With random augmentation in the model, training images must pass through the base every
    epoch, but validation images are not augmented (augmentation and dropout are the
    identity at inference), so the model's prediction is its ``classifier`` layer applied to
    the cached pooled features. After every epoch this adds ``val_loss`` and
    ``val_accuracy`` to the logs, as ``validation_data`` would, without a pass through the base.
    """

    def __init__(self, features: np.ndarray, data: ImageData):
        super().__init__()
        self.features = features
        self.data = data

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        check_labels(self.data, self.model.output_shape[-1])
        probabilities = self.model.get_layer("classifier")(self.features)
        loss = keras.losses.sparse_categorical_crossentropy(self.data.labels, probabilities)
        predicted = np.argmax(np.asarray(probabilities), axis=-1)
        if logs is not None:
            logs["val_loss"] = float(np.mean(np.asarray(loss)))
            logs["val_accuracy"] = float(np.mean(predicted == self.data.labels))
