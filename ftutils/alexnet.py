"""AlexNet, built by hand: ``keras.applications`` does not ship it (§4.1).

The network of Krizhevsky, Sutskever & Hinton, "ImageNet Classification with Deep
Convolutional Neural Networks" (NeurIPS 2012), the ILSVRC-2012 winner: five convolutional
layers (11x11 stride 4, 5x5, then three 3x3), three overlapping 3x3 stride-2 max-pools
(after conv1, conv2 and conv5), local response normalisation after conv1 and conv2, and three
fully connected layers (4096, 4096, 1000) with dropout 0.5 on the first two. ``groups=2``
reproduces the paper's two-GPU split (conv2, conv4 and conv5 see only the maps on their own
GPU): 60,965,224 parameters at 227x227 (the paper's "224" does not fit its own 11x11/4
arithmetic; 227 does). ``groups=1`` gives the common one-tower variant (62,378,344).

``width`` scales every convolution's filters and ``fc_units`` the two hidden dense layers, so
the same architecture trains on a CPU at small inputs. Weights use Keras' default (Glorot)
initialisation, not the paper's N(0, 0.01) with unit biases, which needs its long schedule.
No ImageNet weights exist for this model in Keras; pretrain it with ``ftutils.transfer``.
"""

from __future__ import annotations

from pathlib import Path

import keras
import tensorflow as tf

from ftutils.errors import BackboneError, WeightsUnavailableError

#: Filters of conv1..conv5 and their kernel sizes in the paper (Figure 2, Section 3.5).
FILTERS = (96, 256, 384, 384, 256)
KERNELS = (11, 5, 3, 3, 3)
#: Convolutions whose inputs the paper splits into two GPU groups.
GROUPED = ("conv2", "conv4", "conv5")
#: The input size the paper's layer sizes (55, 27, 13, 6) follow from.
PAPER_SIZE = 227
#: The smallest input for which conv1 (11x11/4) and three 3x3/2 pools leave a 1x1 map.
MIN_SIZE = 67

NO_WEIGHTS = (
    "no ImageNet weights exist for AlexNet in Keras (keras.applications does not include it). "
    "Build it with weights=None, or pretrain it yourself: "
    "ftutils.transfer.pretrained_weights('alexnet', image_size) trains it on the source split."
)


@keras.saving.register_keras_serializable(package="ftutils")
class LocalResponseNormalization(keras.layers.Layer):
    """Local response normalisation across channels (paper Section 3.3).

    b = a / (k + alpha * sum of a^2 over ``depth_radius`` neighbouring maps on each side)^beta
    with the paper's k=2, n=5 (radius 2), alpha=1e-4, beta=0.75. It has no weights.
    Computed in float32 under any precision policy: TensorFlow's CPU kernel has no bfloat16.
    """

    def __init__(self, depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75, **kwargs):
        super().__init__(**kwargs)
        self.depth_radius, self.bias, self.alpha, self.beta = depth_radius, bias, alpha, beta

    def call(self, inputs):
        outputs = tf.nn.local_response_normalization(
            tf.cast(inputs, "float32"), self.depth_radius, self.bias, self.alpha, self.beta
        )
        return tf.cast(outputs, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "depth_radius": self.depth_radius,
            "bias": self.bias,
            "alpha": self.alpha,
            "beta": self.beta,
        }


def feature_size(image_size: int) -> int:
    """Side of the map after pool5 for a square input (6 at 227 px, 1 at 67 px, 0 below)."""
    side = (image_size - 11) // 4 + 1  # conv1, 11x11 stride 4, no padding
    for _ in range(3):  # pool1, pool2, pool5: 3x3 stride 2, no padding; convs keep the size
        side = (side - 3) // 2 + 1 if side >= 3 else 0
    return max(side, 0)


def _channels(filters: int, width: float) -> int:
    """Scaled filter count, a multiple of 8 (so any ``groups`` in 1, 2 divides it)."""
    return max(8, int(round(filters * width / 8)) * 8)


def AlexNet(  # noqa: N802 (named like keras.applications.VGG16)
    input_shape: tuple[int, int, int] = (PAPER_SIZE, PAPER_SIZE, 3),
    include_top: bool = True,
    weights: str | Path | None = None,
    classes: int = 1000,
    width: float = 1.0,
    fc_units: int = 4096,
    dropout: float = 0.5,
    groups: int = 2,
    lrn: bool = True,
    classifier_activation: str | None = "softmax",
    name: str = "alexnet",
) -> keras.Model:
    """AlexNet as a functional model; the paper's configuration by default (see module doc).

    ``include_top=False`` stops after pool5, like ``keras.applications`` models without their
    top: the convolutional base a fine-tuning head goes on. ``weights`` is ``None`` or a path
    to a weights file saved from the same configuration; ``"imagenet"`` raises
    :class:`WeightsUnavailableError` (no such weights exist).
    """
    if weights == "imagenet":
        raise WeightsUnavailableError(NO_WEIGHTS)
    if groups not in (1, 2):
        raise BackboneError(f"groups must be 1 (one tower) or 2 (the paper's split), got {groups}")
    if width <= 0:
        raise BackboneError(f"width must be positive (1.0 = the paper's filters), got {width}")
    side = min(input_shape[0], input_shape[1])
    if feature_size(side) < 1:
        raise BackboneError(
            f"input {input_shape[0]}x{input_shape[1]} is too small for AlexNet: conv1 (11x11, "
            f"stride 4) and three 3x3 stride-2 max-pools need at least {MIN_SIZE} px; resize "
            f"the images to >= {MIN_SIZE} (ftutils.data.make_dataset does that)"
        )
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    for i, (filters, kernel) in enumerate(zip(FILTERS, KERNELS, strict=True), start=1):
        layer = f"conv{i}"
        x = keras.layers.Conv2D(
            _channels(filters, width),
            kernel,
            strides=4 if i == 1 else 1,
            padding="valid" if i == 1 else "same",
            groups=groups if layer in GROUPED else 1,
            activation="relu",
            name=layer,
        )(x)
        if i in (1, 2) and lrn:
            x = LocalResponseNormalization(name=f"lrn{i}")(x)
        if i in (1, 2, 5):  # overlapping pooling, paper Section 3.4
            x = keras.layers.MaxPooling2D(3, strides=2, name=f"pool{i}")(x)
    if include_top:
        x = keras.layers.Flatten(name="flatten")(x)
        for i in (6, 7):  # dropout "in the first two fully-connected layers" (Section 4.2)
            x = keras.layers.Dense(fc_units, activation="relu", name=f"fc{i}")(x)
            if dropout:
                x = keras.layers.Dropout(dropout, name=f"drop{i}")(x)
        x = keras.layers.Dense(classes, activation=classifier_activation, name="fc8")(x)
    model = keras.Model(inputs, x, name=name)
    if weights is not None:
        model.load_weights(weights)
    return model
