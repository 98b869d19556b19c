"""The TensorFlow transfer-learning tutorial's recipe, implemented from its description.

Source: https://www.tensorflow.org/tutorials/images/transfer_learning (read for its recipe
only): random flip and rotation layers in the model, MobileNetV2's own input scaling, the
base called with ``training=False``, global average pooling, dropout 0.2, one dense output;
Adam at 1e-4 for 10 epochs with the base frozen, then the base unfrozen from layer 100 and
RMSprop at 1e-5 for 10 more epochs. The tutorial's dense output is a single logit (two
classes); here it is a softmax over the task's classes. Used by ``bench/fast_path.py``.
"""

from __future__ import annotations

import keras

from ftutils import backbones, data

HEAD_EPOCHS = 10
FINETUNE_EPOCHS = 10
FINE_TUNE_AT = 100  # the tutorial's first trainable layer of the base in phase 2


def build(n_classes: int, image_size: int, seed: int) -> tuple[keras.Model, keras.Model]:
    """The tutorial's model and its base (ImageNet weights from the Keras cache)."""
    base = backbones.get_base("mobilenet_v2", image_size, "imagenet")
    base.trainable = False
    inputs = keras.Input((image_size, image_size, 3))
    x = keras.layers.RandomFlip("horizontal", seed=seed)(inputs)
    x = keras.layers.RandomRotation(0.2, seed=seed + 1)(x)
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(x)  # mobilenet_v2.preprocess_input
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2, seed=seed + 2)(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs), base


def train(model: keras.Model, base: keras.Model, train_data, val_data, image_size: int) -> None:
    """Both phases, as the tutorial runs them (no early stopping)."""
    train_ds = data.make_dataset(train_data, image_size, 32, shuffle=True)
    val_ds = data.make_dataset(val_data, image_size, 32)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-4),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(train_ds, validation_data=val_ds, epochs=HEAD_EPOCHS, shuffle=False, verbose=0)
    base.trainable = True
    for layer in base.layers[:FINE_TUNE_AT]:
        layer.trainable = False
    model.compile(
        optimizer=keras.optimizers.RMSprop(1e-5),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=HEAD_EPOCHS + FINETUNE_EPOCHS,
        initial_epoch=HEAD_EPOCHS,
        shuffle=False,  # make_dataset reshuffles every epoch
        verbose=0,
    )
