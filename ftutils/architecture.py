"""Read an architecture off a built Keras model: layer counts, layer tables, residual stages (§4).

The article describes AlexNet, VGG and ResNet in words (§4.1-§4.3); these helpers count what
the models actually contain, so each claim can be checked against the model itself rather
than against another description. Nested models (a base inside a classifier) are expanded.
"""

from __future__ import annotations

import collections
import re

import keras
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.patches import FancyBboxPatch

#: Layer kinds, tested in order: the first matching class names the kind.
_KINDS: tuple[tuple[str, tuple[type, ...]], ...] = (
    ("input", (keras.layers.InputLayer,)),
    ("conv", (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)),
    ("dense", (keras.layers.Dense,)),
    ("max-pool", (keras.layers.MaxPooling2D,)),
    ("avg-pool", (keras.layers.AveragePooling2D,)),
    ("global-pool", (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D)),
    ("dropout", (keras.layers.Dropout, keras.layers.SpatialDropout2D)),
    ("batch-norm", (keras.layers.BatchNormalization,)),
    (
        "attention",
        (keras.layers.Attention, keras.layers.AdditiveAttention, keras.layers.MultiHeadAttention),
    ),
    ("add", (keras.layers.Add,)),
)
#: Kinds that carry the weights a network's depth counts ("VGG-16", "ResNet-50").
WEIGHTED = ("conv", "dense")
#: ``conv<stage>_block<block>_`` names of keras.applications ResNets (ResNet50, 101, 152).
_BLOCK_NAME = re.compile(r"^conv(\d+)_block(\d+)_")


def layer_kind(layer: keras.Layer) -> str:
    """``conv``, ``dense``, ``max-pool``, ``avg-pool``, ``global-pool``, ``dropout``,
    ``batch-norm``, ``attention``, ``add``, ``input`` or ``other``."""
    for kind, classes in _KINDS:
        if isinstance(layer, classes):
            return kind
    return "other"


def leaf_layers(model: keras.Model) -> list[keras.Layer]:
    """Every layer in order, the layers of nested models in place of the models."""
    result: list[keras.Layer] = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            result += leaf_layers(layer)
        else:
            result.append(layer)
    return result


def count_layers(model: keras.Model) -> dict[str, int]:
    """How many layers of each kind the model holds (kinds from :func:`layer_kind`).

    Every kind appears, with 0 when absent, so ``counts["attention"] == 0`` is a real check.
    """
    counts = collections.Counter(layer_kind(layer) for layer in leaf_layers(model))
    return {kind: counts.get(kind, 0) for kind, _ in _KINDS if kind != "input"} | {
        "other": counts.get("other", 0)
    }


def _detail(layer: keras.Layer) -> str:
    """Kernel, stride and width of a layer in the notation papers use (``11x11/4, 96``)."""
    kind = layer_kind(layer)
    if kind == "conv":
        k, s = layer.kernel_size, layer.strides
        stride = f"/{s[0]}" if s[0] > 1 else ""
        groups = f", groups {layer.groups}" if getattr(layer, "groups", 1) > 1 else ""
        return f"{k[0]}x{k[1]}{stride}, {layer.filters}{groups}"
    if kind in ("max-pool", "avg-pool"):
        return f"{layer.pool_size[0]}x{layer.pool_size[1]}/{layer.strides[0]}"
    if kind == "dense":
        return str(layer.units)
    if kind == "dropout":
        return f"rate {layer.rate}"
    if isinstance(layer, keras.layers.Activation):
        return layer.activation.__name__
    return ""


def layer_table(model: keras.Model, kinds: tuple[str, ...] | None = None) -> pd.DataFrame:
    """One row per layer: name, kind, detail, output shape, parameters and weighted depth.

    ``depth`` counts the conv and dense layers up to and including the row, so a dropout's
    depth says which weighted layer it follows (AlexNet's: 6 and 7). ``kinds`` keeps only
    those kinds (e.g. ``("conv", "max-pool", "dense", "dropout")``).
    """
    rows, depth = [], 0
    for layer in leaf_layers(model):
        kind = layer_kind(layer)
        if kind == "input":
            continue
        depth += kind in WEIGHTED
        if kinds is None or kind in kinds:
            shape = tuple(layer.output.shape[1:])
            rows.append(
                {
                    "layer": layer.name,
                    "kind": kind,
                    "detail": _detail(layer),
                    "output": "x".join(str(d) for d in shape),
                    "parameters": layer.count_params(),
                    "depth": depth,
                }
            )
    return pd.DataFrame(rows)


def residual_stages(model: keras.Model) -> dict[int, int]:
    """Blocks per stage of a keras.applications ResNet, read from its layer names.

    ``conv3_block4_...`` is block 4 of stage 3; ResNet50 gives ``{2: 3, 3: 4, 4: 6, 5: 3}``.
    Raises ValueError when no layer is named that way (not a keras.applications ResNet).
    """
    blocks: dict[int, set[int]] = collections.defaultdict(set)
    for layer in leaf_layers(model):
        match = _BLOCK_NAME.match(layer.name)
        if match:
            blocks[int(match[1])].add(int(match[2]))
    if not blocks:
        raise ValueError(
            f"{model.name} has no layers named conv<stage>_block<n>_...; residual_stages reads "
            "the layer names of keras.applications ResNets (ResNet50/101/152)"
        )
    return {stage: len(numbers) for stage, numbers in sorted(blocks.items())}


def block_layers(model: keras.Model, block: str) -> list[keras.Layer]:
    """The layers of one residual block, e.g. ``block="conv3_block1"``."""
    layers = [layer for layer in leaf_layers(model) if layer.name.startswith(block + "_")]
    if not layers:
        raise ValueError(f"{model.name} has no block {block!r} (try 'conv3_block1')")
    return layers


def _box(ax, x: float, y: float, text: str, color: str, note: str = "") -> None:
    ax.add_patch(
        FancyBboxPatch(
            (x - 1.3, y - 0.3), 2.6, 0.6, boxstyle="round,pad=0.05", fc=color, ec="black", lw=0.8
        )
    )
    ax.text(x, y, text, ha="center", va="center", fontsize=8)
    if note:
        ax.text(x + 1.45, y, note, ha="left", va="center", fontsize=7, color="dimgray")


def _path(ax, *points: tuple[float, float]) -> None:
    """A polyline through ``points`` with an arrow head at the last one."""
    xs, ys = zip(*points, strict=True)
    ax.plot(xs[:-1], ys[:-1], color="black", lw=1)
    ax.annotate("", points[-1], points[-2], arrowprops={"arrowstyle": "->", "lw": 1})


def _layer_box(ax, x: float, y: float, layer: keras.Layer, note: bool) -> None:
    colors = {"conv": "#cfe2f3", "batch-norm": "#fff2cc"}
    label = f"{type(layer).__name__} {_detail(layer)}".strip()
    shape = "x".join(str(d) for d in layer.output.shape[1:]) if note else ""
    _box(ax, x, y, label, colors.get(layer_kind(layer), "#e6e6e6"), shape)


def plot_residual_block(model: keras.Model, block: str = "conv3_block1") -> None:
    """Draw one ResNet block from the model's own layers: main path, shortcut, add, ReLU.

    Layers named ``<block>_1_``, ``_2_``, ``_3_`` form the main path (with its output shapes),
    ``<block>_0_`` the projection shortcut (only the first block of a stage has one; the
    others pass the input through unchanged: the identity shortcut).
    """
    layers = {layer.name.removeprefix(block + "_"): layer for layer in block_layers(model, block)}
    main = [layers[name] for name in layers if name[0] in "123"]
    shortcut = [layers[name] for name in layers if name.startswith("0_")]
    fig, ax = plt.subplots(figsize=(8, 0.6 * (len(main) + 4)))
    top, bottom = len(main) + 1.0, 0.0
    _box(ax, 1.5, top, f"input of {block}", "#e6e6e6")
    for i, layer in enumerate(main):
        y = top - 1 - i
        _layer_box(ax, 3, y, layer, note=True)
        _path(ax, (3, y + 0.67) if i else (2.4, top - 0.33), (3, y + 0.33))
    last = (0.6, top - 0.33)  # where the shortcut leaves the input box
    for i, layer in enumerate(shortcut):
        y = top - 2 - 2 * i
        _layer_box(ax, 0, y, layer, note=False)
        _path(ax, last, (0, y + 0.33))
        last = (0, y - 0.33)
    kind = "projection shortcut" if shortcut else "identity shortcut"
    ax.text(-1.3, top - 1.2 if shortcut else top - 1.5, kind, fontsize=8, style="italic")
    _path(ax, last, (0, bottom + 0.6), (1.0, bottom + 0.33))
    _path(ax, (3, bottom + 0.67), (2.0, bottom + 0.33))
    _box(ax, 1.5, bottom, "Add (main path + shortcut)", "#d9ead3")
    _box(ax, 1.5, bottom - 1, "ReLU -> next block", "#e6e6e6")
    _path(ax, (1.5, bottom - 0.33), (1.5, bottom - 0.67))
    ax.set_xlim(-1.6, 5.6)
    ax.set_ylim(bottom - 1.5, top + 0.5)
    ax.axis("off")
    ax.set_title(f"{model.name}: residual block {block}, drawn from its layers", fontsize=10)
    fig.tight_layout()
    plt.show()
