"""Frozen computation, done once: the fast path of feature extraction and fine-tuning (§2.2, §4.4).

A frozen part of a network maps each image to the same activations every epoch. So the
classifier is cut in two (:func:`cut`): the frozen part below the cut runs once per image
(:func:`activations`, cached on disk; over a memory budget, memory-mapped from disk and
read batch by batch), and only the part above it trains, on those arrays
(:func:`fit_arrays`, :func:`fit_steps`). Cut at the pooling layer, the
activations are the pooled features and the part above is the head; cut at the first layer
of a block, the part above is the top of the base plus the head, fine-tuned. The part above
shares its layers with the classifier, so training it trains the classifier itself.

This cannot be combined with random augmentation of the images, which changes the
activations every epoch (``ftutils.recipe.fine_tune`` then trains through the base).
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from ftutils import cache, distribute, models
from ftutils.config import CACHE_DIR
from ftutils.data import ImageData, ImageFiles, make_dataset
from ftutils.errors import BackboneError
from ftutils.training import TrainingRecord, callbacks, compile_classifier

#: Base layers whose pooled outputs make the multi-depth features (see :func:`multi_depth`):
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

#: Activations larger than this are kept in memory only: 2,000 images cut inside
#: MobileNetV2 at 160 px already take about 1 GB.
DISK_LIMIT_BYTES = 256 * 2**20

#: ``fine_tune``'s default memory budget for activations (see :func:`activations`): larger
#: ones are written to a disk-backed array and read batch by batch. 10,000 images at 224 px
#: take 3.7 GiB cut at ResNet50's or VGG16's last block, 2.9 GiB at MobileNetV2's ``Conv1``.
MEMORY_BUDGET_BYTES = 2**30

#: Activations go to disk in parts of about this size (a whole number of batches each).
_PART_BYTES = 64 * 2**20


class Cut(NamedTuple):
    """A classifier cut in two (see :func:`cut`)."""

    lower: keras.Model  # image -> activations at the cut (the frozen part)
    upper: keras.Model  # those activations -> class probabilities (the part that trains)
    pooled: keras.Model  # those activations -> pooled features (the head's input)


#: What :func:`cut` and :func:`multi_depth` built, per classifier: building a model and
#: tracing its predict step costs seconds, so repeated calls (train, val, test...) reuse it.
_BUILT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def cut(model: keras.Model, at: str = "pool") -> Cut:
    """Cut a :func:`ftutils.models.build_classifier` model at its pooling layer or in its base.

    ``at="pool"``: the lower part computes the pooled features; the upper part is the head
    (dropout and the dense classifier). ``at`` = a base layer: the cut is just below it, at
    the first layer of a block (e.g. ``"block_16_expand"`` in MobileNetV2, or ``"Conv1"`` to
    train everything); a cut inside a residual block would leave the skip connection on the
    wrong side and is refused. The caller keeps the layers below the cut frozen
    (``ftutils.backbones.unfreeze(base, from_layer=at)`` does). Built once per classifier
    and cut, under the classifier's strategy, so extraction and training use all its replicas.
    """
    built = _BUILT.setdefault(model, {})
    if ("cut", at) not in built:
        if at != "pool" and augments(model):
            raise ValueError(
                "the model augments its inputs, so the activations below the cut change every "
                "epoch and cannot be cached; build the classifier with augmentation=None"
            )
        with distribute.scope_of(model):
            built["cut", at] = _cut(model, at)
    return built["cut", at]


def multi_depth(model: keras.Model, layers: Sequence[str]) -> keras.Model:
    """Image -> the global average of each of ``layers``' outputs (base layers), concatenated.

    Features from several depths of the network, from generic edges and textures to
    ImageNet-specific parts (§2.2: the farther the target domain from the source, the more
    the middle layers carry). Built once per classifier and layers.
    """
    built = _BUILT.setdefault(model, {})
    key = ("multi_depth", tuple(layers))
    if key not in built:
        with distribute.scope_of(model):
            built[key] = _multi_depth(model, tuple(layers))
    return built[key]


def augments(model: keras.Model) -> bool:
    """Whether the classifier augments its inputs (``build_classifier(augmentation=...)``)."""
    return any(layer.name == "augmentation" for layer in model.layers)


def _around_base(model: keras.Model) -> tuple[keras.Layer, keras.Model, list[keras.Layer]]:
    """The layer feeding the base, the base, and the layers after it (pooling first)."""
    base = models.base_of(model)
    index = model.layers.index(base)
    after = model.layers[index + 1 :]
    pooling = (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D)
    if not after or not isinstance(after[0], pooling):
        raise BackboneError(
            f"{model.name} does not follow build_classifier's shape (base, global pooling, "
            "head); cut works on ftutils.models.build_classifier models"
        )
    return model.layers[index - 1], base, after


def _images_to_base(model: keras.Model) -> keras.Model:
    """Image -> the tensor the base receives (after preprocessing; augmentation is inactive)."""
    feeding, _, _ = _around_base(model)
    return keras.Model(model.inputs, feeding.output, name="image_to_base")


def _cut(model: keras.Model, at: str) -> Cut:
    feeding, base, after = _around_base(model)
    image = keras.Input(model.input_shape[1:], name="image")
    if at == "pool":
        lower = keras.Model(model.inputs, after[0].output, name="feature_extractor")
        inputs = keras.Input(after[0].output.shape[1:], name="features")
        outputs = inputs
        for layer in after[1:]:
            outputs = layer(outputs)
        return Cut(lower, keras.Model(inputs, outputs, name="head"), keras.Model(inputs, inputs))
    names = [layer.name for layer in base.layers][1:]  # the first one is the input layer
    if at not in names:
        raise BackboneError(
            f"the base has no layer {at!r}; its first layers are {names[:3]}, its last {names[-3:]}"
        )
    tensor = base.get_layer(at).input
    if isinstance(tensor, list | tuple):
        raise BackboneError(
            f"layer {at!r} has {len(tensor)} inputs (it merges branches); cut at a layer with one "
            "input, e.g. the first layer of a block"
        )
    try:
        top = keras.Model(tensor, base.output, name=f"{base.name}_from_{at}")
    except ValueError as exc:
        raise BackboneError(
            f"cannot cut the base at {at!r}: a layer above it also reads a tensor from below "
            f"it (a skip connection); cut at the first layer of a block instead ({exc})"
        ) from None
    below = _images_to_base(model)(image)
    if at != names[0]:
        below = keras.Model(base.input, tensor, name=f"{base.name}_below_{at}")(below)
    inputs = keras.Input(tensor.shape[1:], name=f"{at}_input")
    pooled = after[0](top(inputs))
    outputs = pooled
    for layer in after[1:]:
        outputs = layer(outputs)  # dropout (if any) and the classifier
    return Cut(
        keras.Model(image, below, name=f"below_{at}"),
        keras.Model(inputs, outputs, name=f"from_{at}"),
        keras.Model(inputs, pooled, name=f"pooled_from_{at}"),
    )


def _multi_depth(model: keras.Model, layers: tuple[str, ...]) -> keras.Model:
    base = models.base_of(model)
    names = [layer.name for layer in base.layers]
    unknown = [name for name in layers if name not in names]
    if unknown:
        raise BackboneError(f"the base has no layer(s) {unknown}; its last layers are {names[-4:]}")
    taps = keras.Model(base.input, [base.get_layer(name).output for name in layers])
    image = keras.Input(model.input_shape[1:], name="image")
    outputs = taps(_images_to_base(model)(image))
    pooled = [keras.layers.GlobalAveragePooling2D()(x) for x in outputs]
    features = keras.layers.Concatenate()(pooled) if len(pooled) > 1 else pooled[0]
    return keras.Model(image, features, name="multi_depth_" + "-".join(layers))


def activations(
    lower: keras.Model,
    data: ImageData | ImageFiles | tf.data.Dataset,
    batch_size: int = 64,
    use_disk_cache: bool = True,
    verbose: int = 0,
    memory_budget: int | None = None,
) -> np.ndarray:
    """The output of ``lower`` (a :func:`cut`'s lower part, or :func:`multi_depth`) as float32.

    ``data``: ImageData, or a ``tf.data.Dataset`` of batched images with values in [0, 255]
    (or of ``(images, labels)`` batches), which is passed through as it is; or
    ``ftutils.data.ImageFiles``, read from disk batch by batch. For ImageData and ImageFiles,
    the result is kept on disk, keyed by the extractor's layers and weights, the images (an
    ImageData's pixels; ImageFiles' paths, sizes and modification times:
    ``ImageFiles.fingerprint``), the precision policy and the library versions, when it
    takes at most :data:`DISK_LIMIT_BYTES`; larger ones stay in memory only. Under a
    mixed-precision policy the base computes in float16 or bfloat16; the result is cast to
    float32. ``batch_size`` is per replica. ``verbose``: Keras' ``predict`` progress display
    while the images go through (1: a progress bar, 2: a line), shown only when they do.

    ``memory_budget`` (bytes; ImageData and ImageFiles): a result larger than this is never
    held in memory. It is written part by part to a ``.npy`` file in that cache (atomically,
    under the same key, so a later call reuses it; ``use_disk_cache=False`` rewrites it) and
    returned memory-mapped, read-only (``np.memmap``): :func:`fit_arrays` reads such arrays
    batch by batch. ``None``: no budget.
    """
    if isinstance(data, tf.data.Dataset):
        return np.asarray(lower.predict(data, verbose=verbose), dtype="float32")
    over_budget = memory_budget is not None and activation_bytes(lower, len(data)) > memory_budget
    path = _cache_path(lower, data) if use_disk_cache or over_budget else None
    if path is not None and path.is_file() and use_disk_cache:
        return np.load(path, mmap_mode="r" if over_budget else None)
    batch = distribute.global_batch(batch_size, lower)
    if over_budget:
        cache.write_atomically(path, lambda temporary: _write_parts(lower, data, batch, temporary,
                                                                    verbose))  # fmt: skip
        return np.load(path, mmap_mode="r")
    ds = make_dataset(data, lower.input_shape[1], batch)
    result = np.asarray(lower.predict(ds, verbose=verbose), dtype="float32")
    if path is not None and result.nbytes <= DISK_LIMIT_BYTES:
        cache.write_atomically(path, lambda temporary: np.save(temporary, result))
    return result


def activation_bytes(lower: keras.Model, n: int) -> int:
    """How many bytes ``lower``'s float32 output takes for ``n`` examples."""
    return n * int(np.prod(lower.output_shape[1:])) * 4


def _write_parts(lower, data: ImageData | ImageFiles, batch: int, path: Path, verbose: int):
    """Write ``lower``'s output for ``data`` into a new ``.npy`` file, a few batches at a time.

    Each part maps the file only while it is written: written pages that stay mapped count
    towards the process's resident memory, however little of it they need.
    """
    shape = (len(data), *lower.output_shape[1:])
    np.lib.format.open_memmap(path, mode="w+", dtype="float32", shape=shape)  # header, size
    step = batch * max(1, _PART_BYTES // max(1, activation_bytes(lower, batch)))
    for start in range(0, len(data), step):
        part = data.take(np.arange(start, min(start + step, len(data))))
        values = lower.predict(make_dataset(part, lower.input_shape[1], batch), verbose=verbose)
        out = np.load(path, mmap_mode="r+")
        out[start : start + len(part)] = values
        out.flush()
        del out


def _cache_path(lower: keras.Model, data: ImageData | ImageFiles) -> Path:
    images = data.fingerprint() if isinstance(data, ImageFiles) else data.images
    key = cache.key(lower.name, cache.architecture(lower), list(lower.weights), images)
    return CACHE_DIR / "activations" / f"{lower.name[:40]}-{lower.input_shape[1]}px-{key}.npy"


def extract_features(
    model: keras.Model,
    data: ImageData | ImageFiles | tf.data.Dataset,
    batch_size: int = 64,
    use_disk_cache: bool = True,
    layers: Sequence[str] | None = None,
) -> np.ndarray:
    """Pooled base features of every image (float32): ``activations(cut(model).lower, data)``.

    ``layers``: multi-depth features of those base layers instead (:func:`multi_depth`).
    """
    lower = multi_depth(model, layers) if layers else cut(model).lower
    return activations(lower, data, batch_size, use_disk_cache)


def fit_arrays(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    validation: tuple[np.ndarray, np.ndarray],
    epochs: int,
    batch_size: int = 32,
    patience: int | None = None,
    record: TrainingRecord | None = None,
    phase: str = "head",
    callbacks_extra: Sequence[keras.callbacks.Callback] = (),
    verbose: int = 0,
    run_dir: str | Path | None = None,
) -> TrainingRecord:
    """Fit a compiled model on arrays (cached activations); append to ``record``.

    ``patience`` stops early on validation loss and keeps the best epoch. ``batch_size`` is
    per replica; with several replicas, fewer examples than there are replicas are left out
    of each pass (see ``ftutils.data.make_dataset``). ``run_dir``: resumable after a kill,
    in ``run_dir/<phase>`` (``ftutils.training.resumable_callbacks``). Memory-mapped arrays
    (``np.memmap``, from :func:`activations` over its memory budget) are read batch by batch,
    in the order Keras gives in-memory arrays, so both train alike.
    """
    record = record if record is not None else TrainingRecord()
    replicas = distribute.replicas(model)
    batch = distribute.global_batch(batch_size, model)
    x_val, y_val = validation
    n_train, n_val = (len(a) - len(a) % replicas for a in (x, x_val))
    train = _streamed(x[:n_train], y[:n_train], batch, shuffle=True)
    val = _streamed(x_val[:n_val], y_val[:n_val], batch, shuffle=False)
    with distribute.explain_determinism_errors():
        history = model.fit(
            *((train,) if train is not None else (x[:n_train], y[:n_train])),
            validation_data=val if val is not None else (x_val[:n_val], y_val[:n_val]),
            epochs=epochs,
            batch_size=None if train is not None else batch,
            shuffle=train is None,  # a stream is shuffled as Keras shuffles arrays
            callbacks=[*callbacks(patience, run_dir=run_dir, phase=phase), *callbacks_extra],
            verbose=verbose,
        )
    record.add(phase, history)
    return record


def _streamed(x: np.ndarray, y: np.ndarray, batch: int, shuffle: bool) -> tf.data.Dataset | None:
    """``(x, y)`` batches with the rows of a memory-mapped ``x`` read batch by batch (None for
    an array in memory): Keras' own batching of arrays applied to the row numbers, so the
    batches and their shuffled order are those of ``fit(x, y, batch_size=batch)``."""
    if not isinstance(x, np.memmap):
        return None
    from keras.src.trainers.data_adapters.array_data_adapter import ArrayDataAdapter

    rows = np.arange(len(x))
    adapter = ArrayDataAdapter(rows, np.asarray(y), batch_size=batch, shuffle=shuffle)

    def load(indices, labels):
        values = tf.numpy_function(_row_reader(x), [indices], tf.float32, stateful=False)
        values.set_shape((None, *x.shape[1:]))
        return values, labels

    ds = adapter.get_tf_dataset().map(load, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.apply(tf.data.experimental.assert_cardinality(adapter.num_batches))
    return ds.prefetch(tf.data.AUTOTUNE)


def _row_reader(x: np.memmap):
    """A function: row numbers -> those rows of ``x``, read with plain file reads. Pages read
    through the memory map would stay mapped, and count towards the process's resident
    memory, until all of the file had."""
    row_shape = x.shape[1:]
    row_bytes = int(np.prod(row_shape)) * x.dtype.itemsize

    def read(indices: np.ndarray) -> np.ndarray:
        rows = np.empty((len(indices), *row_shape), x.dtype)
        with open(x.filename, "rb", buffering=0) as file:
            for k, i in enumerate(indices):
                data = os.pread(file.fileno(), row_bytes, x.offset + int(i) * row_bytes)
                rows[k] = np.frombuffer(data, x.dtype).reshape(row_shape)
        return rows

    return read


def train_head(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    n_classes: int | None = None,
    epochs: int = 20,
    optimizer: str = "adam",
    learning_rate: float = 1e-3,
    dropout: float = 0.2,
    batch_size: int = 32,
    standardize: bool = False,
    patience: int | None = None,
    record: TrainingRecord | None = None,
    phase: str = "head",
    name: str = "head",
    verbose: int = 0,
) -> tuple[keras.Model, TrainingRecord]:
    """A new dense head (dropout + softmax) trained on cached features; the head and its record.

    ``n_classes`` defaults to the largest label + 1. ``optimizer`` is one of
    ``ftutils.training.OPTIMIZERS``. ``standardize`` puts a Normalization layer fitted to the
    training features first (for multi-depth features). To train the head of a classifier
    in place instead, fit ``cut(model).upper`` with :func:`fit_arrays`.
    """
    n_classes = n_classes or int(max(np.max(y_train), np.max(y_val))) + 1
    if max(np.max(y_train), np.max(y_val)) >= n_classes:
        raise ValueError(f"labels go up to {max(np.max(y_train), np.max(y_val))}: n_classes "
                         f"must be more than that, got {n_classes}")  # fmt: skip
    standardize_with = x_train if standardize else None
    head = models.build_head(x_train.shape[1], n_classes, dropout, None, standardize_with, name)
    compile_classifier(head, optimizer, learning_rate)
    record = fit_arrays(
        head, x_train, y_train, (x_val, y_val), epochs, batch_size, patience, record, phase,
        verbose=verbose,
    )  # fmt: skip
    return head, record


def fit_steps(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    steps: int,
    batch_size: int = 32,
    seed: int = 0,
    verbose: int = 0,
) -> keras.callbacks.History:
    """Train a compiled model on in-memory arrays for exactly ``steps`` batches (§4.5).

    The arrays are passed over again and again, reshuffled (seeded) on every pass as epochs
    would be, but inside one Keras epoch: a ten-image k-shot set would otherwise spend its
    time in per-epoch overhead. A fixed number of steps also gives every data size the same
    training budget. Batches hold ``min(batch_size, len(x))`` examples per replica.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"need as many labels as examples (>= 1): got {len(x)} and {len(y)}")
    batch = distribute.global_batch(min(batch_size, len(x)), model)
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    with distribute.explain_determinism_errors():
        return model.fit(ds, epochs=1, steps_per_epoch=steps, shuffle=False, verbose=verbose)


class CachedFeatureValidation(keras.callbacks.Callback):
    """Validate a :func:`ftutils.models.build_classifier` model on cached features (§3.5).

    With random augmentation in the model, training images must pass through the base every
    epoch, but validation images are not augmented (augmentation and dropout are the
    identity at inference), so the model's prediction is its head, ``cut(model).upper``,
    applied to the cached pooled features. After every epoch this adds ``val_loss`` and
    ``val_accuracy`` to the logs, as ``validation_data`` would, without a pass through the base.
    """

    def __init__(self, features: np.ndarray, labels: np.ndarray):
        super().__init__()
        self.features = features
        self.labels = np.asarray(labels)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        probabilities = cut(self.model).upper(self.features, training=False)
        loss = keras.losses.sparse_categorical_crossentropy(self.labels, probabilities)
        predicted = np.argmax(np.asarray(probabilities), axis=-1)
        if logs is not None:
            logs["val_loss"] = float(np.mean(np.asarray(loss)))
            logs["val_accuracy"] = float(np.mean(predicted == self.labels))
