"""Figures the notebooks share: learning curves, sample grids, confusion matrices.

Each function draws its Chinese class names and titles with a CJK-capable font
(``ftutils.fonts.with_cjk_font``), without ``setup()`` and without changing the caller's
matplotlib settings.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ftutils.data import ImageData
from ftutils.fonts import with_cjk_font
from ftutils.training import TrainingRecord

#: Axis labels in the glossary's Chinese, the English after it (GUIDE §4: figures in Chinese).
EPOCH = "轮 (epoch)"
METRIC_NAMES = {
    "loss": "损失 (loss)",
    "accuracy": "准确率 (accuracy)",
    "val_loss": "验证损失 (val loss)",
    "val_accuracy": "验证准确率 (val accuracy)",
}


@with_cjk_font
def plot_learning_curves(record: TrainingRecord, title: str = "") -> None:
    """Loss and accuracy (train and validation) per epoch; phase changes marked."""
    epochs = np.array([row["epoch"] for row in record.rows])
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        name = METRIC_NAMES[metric]
        ax.plot(epochs, record.series(metric), "o-", label=f"训练 {name}")
        ax.plot(epochs, record.series(f"val_{metric}"), "s--", label=f"验证 {name}")
        for phase, first, _ in record.phases()[1:]:
            ax.axvline(first - 0.5, color="grey", linestyle=":")
            ax.annotate(phase, (first - 0.4, 0.95), xycoords=("data", "axes fraction"))
        ax.set_xlabel(EPOCH)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    plt.show()


@with_cjk_font
def plot_samples(data: ImageData, per_class: int = 4, title: str = "") -> None:
    """A grid with ``per_class`` images of every class, one class per column."""
    fig, axes = plt.subplots(
        per_class, data.n_classes, figsize=(1.3 * data.n_classes, 1.4 * per_class), squeeze=False
    )
    for c, name in enumerate(data.class_names):
        indices = np.flatnonzero(data.labels == c)[:per_class]
        for row in range(per_class):
            ax = axes[row, c]
            ax.axis("off")
            if row < len(indices):
                ax.imshow(data.images[indices[row]], cmap="gray")
        axes[0, c].set_title(name, fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    plt.show()


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts[i, j] = images of true class i predicted as class j."""
    counts = np.zeros((n_classes, n_classes), dtype=int)
    np.add.at(counts, (y_true, y_pred), 1)
    return counts


@with_cjk_font
def plot_confusion_matrix(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: tuple[str, ...], title: str = ""
) -> None:
    """Row-normalised confusion matrix with the counts written in each cell."""
    counts = confusion_matrix(y_true, y_pred, len(class_names))
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i, j in np.ndindex(counts.shape):
        color = "white" if rates[i, j] > 0.5 else "black"
        ax.text(j, i, counts[i, j], ha="center", va="center", fontsize=7, color=color)
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(class_names)), class_names, fontsize=8)
    ax.set_xlabel("预测类别 (predicted)")
    ax.set_ylabel("真实类别 (true)")
    ax.set_title(title)
    fig.tight_layout()
    plt.show()


@with_cjk_font
def plot_sweep(
    results: pd.DataFrame,
    x: str,
    y: str = "accuracy",
    hue: str = "method",
    logx: bool = True,
    title: str = "",
) -> None:
    """Mean of ``y`` against ``x`` for each ``hue``, the band spanning min..max over seeds."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, group in results.groupby(hue, sort=False):
        stats = group.groupby(x)[y].agg(["mean", "min", "max"]).sort_index()
        ax.plot(stats.index, stats["mean"], "o-", label=str(label))
        ax.fill_between(stats.index, stats["min"], stats["max"], alpha=0.2)
    if logx:
        ax.set_xscale("log")
        ax.set_xticks(sorted(results[x].unique()), [str(v) for v in sorted(results[x].unique())])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.grid(alpha=0.3)
    ax.legend(title=hue)
    ax.set_title(title)
    fig.tight_layout()
    plt.show()


@with_cjk_font
def plot_records(
    records: dict[str, TrainingRecord],
    metrics: tuple[str, ...] = ("accuracy", "val_accuracy"),
    title: str = "",
) -> None:
    """Several runs' curves side by side: one panel per metric, one line per run (§3.4, §3.5).

    With the default metrics, training and validation accuracy share a y-axis, so the gap
    between them (what a regulariser narrows) can be read across runs.
    """
    fig, axes = plt.subplots(
        1, len(metrics), figsize=(5.5 * len(metrics), 3.8), sharey=True, squeeze=False
    )
    for ax, metric in zip(axes[0], metrics, strict=True):
        for label, record in records.items():
            values = record.series(metric)
            ax.plot(np.arange(1, len(values) + 1), values, label=label)
        ax.set_xlabel(EPOCH)
        ax.set_title(METRIC_NAMES.get(metric, metric))
        ax.grid(alpha=0.3)
    axes[0, 0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    plt.show()


@with_cjk_font
def plot_augmentation_grid(
    image: np.ndarray, layers: dict, samples: int = 6, title: str = ""
) -> None:
    """One image through each augmentation layer: a row per layer, ``samples`` random draws.

    ``image`` is one ``(H, W, 3)`` RGB image with values in [0, 255]; ``layers`` maps a row
    name to a Keras layer, called with ``training=True`` (§3.5). The first column is the
    original.
    """
    batch = np.repeat(np.asarray(image, dtype="float32")[None], samples, axis=0)
    fig, axes = plt.subplots(
        len(layers), samples + 1, figsize=(1.3 * (samples + 1), 1.35 * len(layers)), squeeze=False
    )
    for row, (name, layer) in enumerate(layers.items()):
        augmented = np.asarray(layer(batch, training=True))
        for col, picture in enumerate([batch[0], *augmented]):
            ax = axes[row, col]
            ax.imshow(np.clip(picture, 0, 255).astype("uint8"))
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row, 0].set_ylabel(name, fontsize=9)
    axes[0, 0].set_title("原图 (original)", fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    plt.show()
