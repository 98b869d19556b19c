"""Fine-tuning the top of a base on cached activations: the fast path for §4.4-§4.5.

Fine-tuning only the top layers of a base (BatchNormalization frozen, as
``ftutils.backbones.unfreeze`` leaves it, and no random augmentation) leaves everything
below them a fixed function of the image. :func:`split_classifier` cuts a classifier there;
:func:`activations` runs the frozen lower part once, like cached features
(``ftutils.features``), and only the upper part trains, on those arrays, with
:func:`fit_steps`. The upper part shares its layers with the classifier, so training it
fine-tunes the classifier itself, with the same result as training the whole model.
"""

from __future__ import annotations

from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from ftutils import distribute, models
from ftutils.data import ImageData, make_dataset
from ftutils.errors import BackboneError


class SplitClassifier(NamedTuple):
    """A classifier cut in two below one layer of its base (see :func:`split_classifier`)."""

    lower: keras.Model  # image -> activations entering the cut layer (the frozen part)
    upper: keras.Model  # those activations -> class probabilities (the part that trains)
    pooled: keras.Model  # those activations -> pooled features (the head's input)


def split_classifier(model: keras.Model, at: str) -> SplitClassifier:
    """Cut a :func:`ftutils.models.build_classifier` model just below base layer ``at``.

    Cut at the first layer of a block (e.g. ``"block_16_expand"`` in MobileNetV2, or its
    first layer ``"Conv1"`` to train everything): a cut inside a residual block would leave
    the skip connection on the wrong side and is refused. The caller keeps the layers below
    ``at`` frozen (``ftutils.backbones.unfreeze(base, from_layer=at)`` does).
    """
    if any(layer.name == "augmentation" for layer in model.layers):
        raise ValueError(
            "the model augments its inputs, so the activations below the cut change every "
            "epoch and cannot be cached; build the classifier with augmentation=None"
        )
    with distribute.scope_of(model):  # the parts train under the classifier's strategy
        return _split(model, at)


def _split(model: keras.Model, at: str) -> SplitClassifier:
    base = models.base_of(model)
    names = [layer.name for layer in base.layers][1:]  # the first one is the input layer
    if at not in names:
        raise BackboneError(
            f"the base has no layer {at!r}; its first layers are {names[:3]}, its last {names[-3:]}"
        )
    cut = base.get_layer(at).input
    if isinstance(cut, (list, tuple)):
        raise BackboneError(
            f"layer {at!r} has {len(cut)} inputs (it merges branches); cut at a layer with one "
            "input, e.g. the first layer of a block"
        )
    try:
        top = keras.Model(cut, base.output, name=f"{base.name}_from_{at}")
    except ValueError as exc:
        raise BackboneError(
            f"cannot cut the base at {at!r}: a layer above it also reads a tensor from below "
            f"it (a skip connection); cut at the first layer of a block instead ({exc})"
        ) from None
    image = keras.Input(model.input_shape[1:], name="image")
    below = model.get_layer("preprocess")(image)
    if at != names[0]:
        below = keras.Model(base.input, cut, name=f"{base.name}_below_{at}")(below)
    inputs = keras.Input(cut.shape[1:], name=f"{at}_input")
    pooled = model.get_layer("pool")(top(inputs))
    outputs = pooled
    for layer in model.layers[model.layers.index(model.get_layer("pool")) + 1 :]:
        outputs = layer(outputs)  # dropout (if any) and the classifier
    return SplitClassifier(
        keras.Model(image, below, name=f"below_{at}"),
        keras.Model(inputs, outputs, name=f"from_{at}"),
        keras.Model(inputs, pooled, name=f"pooled_from_{at}"),
    )


def activations(lower: keras.Model, data: ImageData, batch_size: int = 64) -> np.ndarray:
    """The output of ``split_classifier(...).lower`` for every image, computed once, float32.

    ``batch_size`` is per replica; under a mixed-precision policy the activations are
    computed in float16 or bfloat16 and stored as float32.
    """
    ds = make_dataset(data, lower.input_shape[1], distribute.global_batch(batch_size, lower))
    return np.asarray(lower.predict(ds, verbose=0), dtype="float32")


def fit_steps(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    steps: int,
    batch_size: int = 32,
    seed: int = 0,
    verbose: int = 0,
) -> keras.callbacks.History:
    """Train a compiled model on in-memory arrays for exactly ``steps`` batches.

    The arrays are passed over again and again, reshuffled (seeded) on every pass as epochs
    would be, but inside one Keras epoch: a ten-image k-shot set would otherwise spend its
    time in per-epoch overhead. A fixed number of steps also gives every data size the same
    training budget (§4.5). Batches hold ``min(batch_size, len(x))`` examples per replica.
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
