"""The classifier every chapter fine-tunes: pretrained base + new head (§2, §4.4)."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from ftutils import backbones, distribute


def build_classifier(
    backbone: str = "mobilenet_v2",
    n_classes: int = 10,
    image_size: int | None = None,
    weights: str | Path | None = "imagenet",
    dropout: float = 0.2,
    augmentation: keras.Layer | None = None,
    strategy: tf.distribute.Strategy | None = None,
) -> keras.Model:
    """Image -> [augmentation] -> preprocessing -> frozen base -> pooling -> dropout -> dense.

    Inputs are RGB images with values in [0, 255] (what ``ftutils.data.make_dataset``
    yields). The base starts frozen; ``model.base`` (or ``base_of(model)``, which also
    finds it in a reloaded model) is the base, for ``ftutils.backbones.unfreeze``. The
    model is built under ``strategy``, else ``ftutils.distribute.current()``, in the global
    precision policy; its output layer computes in float32 whatever the policy (softmax in
    float16 or bfloat16 rounds probabilities and the loss).
    """
    if n_classes < 2:
        raise ValueError(f"a classifier needs n_classes >= 2, got {n_classes}")
    with (strategy or distribute.current()).scope():
        base = backbones.get_base(backbone, image_size, weights)
        backbones.freeze(base)
        inputs = keras.Input(base.input_shape[1:], name="image")
        x = augmentation(inputs) if augmentation is not None else inputs
        x = backbones.preprocessing(backbone)(x)
        x = base(x, training=False)
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name="dropout")(x)
        outputs = keras.layers.Dense(
            n_classes, activation="softmax", dtype="float32", name="classifier"
        )(x)
        model = keras.Model(inputs, outputs, name=f"{backbone}_classifier")
    model.base = base  # tracked once: the base's weights are not counted twice
    return model


def base_of(model: keras.Model) -> keras.Model:
    """The pretrained base inside a classifier built by :func:`build_classifier`.

    ``model.base`` when the model was built here; a model reloaded from a ``.keras`` file
    has lost that attribute, and its base is the nested model that is not the augmentation.
    """
    if isinstance(getattr(model, "base", None), keras.Model):
        return model.base
    nested = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.Model) and layer.name != "augmentation"
    ]
    if len(nested) != 1:
        raise ValueError(
            f"{model.name} holds {len(nested)} nested models besides the augmentation; "
            "base_of expects the one base of a build_classifier model"
        )
    return nested[0]


def build_head(
    feature_dim: int,
    n_classes: int,
    dropout: float = 0.2,
    like: keras.Model | None = None,
    standardize_with: np.ndarray | None = None,
    name: str = "head",
    strategy: tf.distribute.Strategy | None = None,
) -> keras.Model:
    """The classifier's head alone, trained on cached features (the fast path, §4.4).

    ``standardize_with`` (the training features) adds a Normalization layer fitted to them,
    for features whose scales differ, such as multi-depth features. Built under ``strategy``,
    else the strategy of ``like`` (the classifier it belongs to) when given, else under
    ``ftutils.distribute.current()``; its output is float32 under any policy.
    """
    chosen = strategy or (like.distribute_strategy if like is not None else distribute.current())
    with chosen.scope():
        inputs = keras.Input((feature_dim,), name="features")
        x = inputs
        if standardize_with is not None:
            # float32 under any policy: bfloat16 would round large features before the subtraction
            normalize = keras.layers.Normalization(dtype="float32", name="standardize")
            normalize.adapt(standardize_with)
            x = normalize(x)
        x = keras.layers.Dropout(dropout, name="dropout")(x) if dropout else x
        outputs = keras.layers.Dense(
            n_classes, activation="softmax", dtype="float32", name="classifier"
        )(x)
        return keras.Model(inputs, outputs, name=name)


def copy_head(head: keras.Model, model: keras.Model) -> None:
    """Put a head trained on cached features on top of the full classifier."""
    model.get_layer("classifier").set_weights(head.get_layer("classifier").get_weights())


def trainable_summary(model: keras.Model) -> dict:
    """Counts of trainable and frozen parameters (what freezing actually froze)."""
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    frozen = sum(int(w.numpy().size) for w in model.non_trainable_weights)
    return {"trainable": trainable, "non_trainable": frozen, "total": trainable + frozen}
