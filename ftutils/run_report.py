"""The report of one ``python -m ftutils finetune`` run (:mod:`ftutils.cli`): ``report.md``.

What a reader needs to judge a classifier fine-tuned on their own images (§2.1, §4.4): the
test accuracy, overall and per class, the confusion matrix, the learning curves of both
phases, the misclassified test images by file name, and how the run was made (the exact
command, the settings, the library versions). Figures are PNG files beside the report; every
file is written to a temporary name and renamed, so a kill never leaves half of one.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import platform
import re
from pathlib import Path

import keras
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf

from ftutils import cache, distribute, fonts, plots, recipe
from ftutils.data import ImageData, ImageFiles, make_dataset
from ftutils.training import TrainingRecord

#: At most this many misclassified test images are drawn (all are listed).
GRID_LIMIT = 40
#: Below this many images in the smallest class, the report says how few images its scores
#: rest on.
FEW_PER_CLASS = 20


@dataclasses.dataclass(frozen=True)
class Run:
    """What one ``finetune`` command was given and how it split the images."""

    command: str
    folder: Path
    settings: dict
    parts: dict[str, ImageData | ImageFiles]  # "train", "validation", "test"
    test_files: list[Path]  # the file of each test image
    warnings: list[str]  # files skipped, unbalanced classes...
    choice: recipe.Choice | None = None  # the candidates tried and the one chosen


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``correct / n`` (95 % for z = 1.96): where the
    accuracy on all such images lies, given ``n`` of them; unlike ``p +- z * se`` it stays in
    [0, 1] and is not empty at 0 or ``n`` correct (Wilson 1927)."""
    if n <= 0:
        return 0.0, 1.0
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def write(out: Path, model: keras.Model, record: TrainingRecord, run: Run) -> float:
    """Score ``model`` on the test images and write ``report.md`` and its figures into
    ``out``; return the test accuracy. Figures are saved with matplotlib's non-interactive
    backend, never shown."""
    plt.switch_backend("agg")
    test = run.parts["test"]
    probabilities = model.predict(make_dataset(test, model.input_shape[1], 64), verbose=0)
    predicted = np.argmax(probabilities, axis=-1)
    accuracy = float(np.mean(predicted == test.labels))
    _save(
        out / "learning_curves.png",
        plots.plot_learning_curves,
        record,
        "Loss and accuracy per epoch: the head, then the fine-tune",
    )
    _save(
        out / "confusion_matrix.png",
        plots.plot_confusion_matrix,
        test.labels,
        predicted,
        test.class_names,
        "Test images: true class (rows) against predicted (columns)",
    )
    wrong = np.flatnonzero(predicted != test.labels)
    (out / "misclassified.png").unlink(missing_ok=True)  # from an earlier report
    if len(wrong):
        _save(out / "misclassified.png", _plot_misclassified, test, wrong, probabilities,
              model.input_shape[1])  # fmt: skip
    sections = (
        _summary(run, accuracy, predicted),
        *([_recipe_section(run.choice, accuracy)] if run.choice is not None else []),
        *([_self_training_section(run.choice)] if _self_trained(run) else []),
        _data_section(run),
        _per_class_section(test, predicted),
        _confusion_section(test, predicted),
        _curves_section(record),
        _misclassified_section(run, wrong, predicted, probabilities),
        _provenance_section(run, out),
    )
    text = "\n\n".join(sections) + "\n"
    cache.write_atomically(out / "report.md", lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return accuracy


def _save(path: Path, plot, *args) -> None:
    """Draw one figure with ``plot(*args)`` (it may end in ``plt.show()``, as the
    ``ftutils.plots`` functions do) and save it to ``path``."""
    plot(*args)
    figure = plt.gcf()
    cache.write_atomically(path, lambda tmp: figure.savefig(tmp, dpi=110, bbox_inches="tight"))
    plt.close(figure)


@fonts.with_cjk_font
def _plot_misclassified(
    test: ImageData | ImageFiles, wrong: np.ndarray, probabilities: np.ndarray, image_size: int
) -> None:
    """A grid of the misclassified test images, each titled true -> predicted (probability);
    ImageFiles' images are read from their files (only those drawn)."""
    shown = wrong[:GRID_LIMIT]
    columns = min(len(shown), 8)
    rows = -(-len(shown) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, shown, strict=False):
        guess = int(np.argmax(probabilities[i]))
        ax.imshow(test.read(i, image_size) if isinstance(test, ImageFiles) else test.images[i])
        ax.set_title(
            f"{test.class_names[test.labels[i]]} → {test.class_names[guess]}\n"
            f"({probabilities[i, guess]:.2f})",
            fontsize=8,
        )
    fig.suptitle("Misclassified test images: true → predicted (probability)")
    fig.tight_layout()


def _table(header: list[str], rows: list[list]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _summary(run: Run, accuracy: float, predicted: np.ndarray) -> str:
    test = run.parts["test"]
    correct = int(np.sum(predicted == test.labels))
    low, high = wilson_interval(correct, len(test))
    if run.choice is None:
        how = (
            f"The §4.4 workflow on {run.settings['backbone']} with ImageNet weights at "
            f"{run.settings['image_size']} px: a new head trained on features of the frozen base "
            "(computed once), then the base's top block fine-tuned with BatchNormalization "
            "frozen, each phase stopped early on the validation loss."
        )
    else:
        chosen = run.choice.chosen
        how = f"The model: the {chosen.about}; chosen for {chosen.why}."
        if run.choice.self_training is not None and run.choice.self_training.kept:
            how += " Then self-trained on unlabelled images (see below)."
    few = ""
    if sum(part.class_counts() for part in run.parts.values()).min() < FEW_PER_CLASS:
        few = (
            f" Few images: the choice rests on {len(run.parts['validation'])} validation "
            f"images and this score on {len(test)} test images; with so few, read the interval "
            "rather than the score."
        )
    return (
        f"# Fine-tuning report: {run.folder.name}\n\n"
        f"**Test accuracy: {accuracy:.3f}** ({correct} of {len(test)} test images; 95 % "
        f"interval {low:.3f} to {high:.3f} (Wilson); chance is "
        f"{1 / test.n_classes:.3f} for {test.n_classes} classes: "
        f"{', '.join(test.class_names)}).{few}\n\n"
        f"{how} The test images were used for nothing but this score."
    )


def _recipe_section(choice: recipe.Choice, accuracy: float) -> str:
    rows = []
    for t in choice.tried:
        val = "" if t.val_accuracy is None else f"{t.val_accuracy:.3f}"
        seconds = "" if t.seconds is None else f"{t.seconds:.0f}"
        test = f"{accuracy:.3f}" if t.status == "chosen" else ""
        resumed = " (trained in an earlier run)" if t.resumed else ""
        rows.append([t.name, val, seconds + resumed, t.status, test, t.why])
    chosen = choice.chosen
    low, high = wilson_interval(round(chosen.val_accuracy * choice.val_size), choice.val_size)
    return (
        "## Which recipe, and why\n\n"
        f"Each candidate was trained on the training images and scored on the "
        f"{choice.val_size} validation images; the one with the higher validation accuracy "
        f"was kept (its validation score's 95 % interval: {low:.3f} to {high:.3f}). Only the "
        "kept model was scored on the test images.\n\n"
        + _table(
            ["recipe", "validation accuracy", "seconds", "status", "test accuracy", "why"], rows
        )  # fmt: skip
        + "\n\n"
        + "\n".join(f"- {t.name}: {t.about}" for t in choice.tried)
    )


def _self_trained(run: Run) -> bool:
    return run.choice is not None and run.choice.self_training is not None


def _self_training_section(choice: recipe.Choice) -> str:
    st = choice.self_training
    rows = [
        [r.threshold, r.round, r.pseudo_labels,
         "" if r.pseudo_accuracy is None else f"{r.pseudo_accuracy:.3f}", f"{r.val_accuracy:.3f}"]
        for r in st.rounds
    ]  # fmt: skip
    checked = any(r.pseudo_accuracy is not None for r in st.rounds)
    return (
        "## Self-training on the unlabelled images (§4.5)\n\n"
        "New heads on the chosen model's features were trained on the labelled images plus "
        "the unlabelled ones predicted with at least the threshold's confidence (up to a "
        "growing number per class each round, refitted from scratch), for each threshold; "
        "the threshold was chosen on validation, and the result kept only if it beat the "
        f"model without it there.\n\n**{st.why[0].upper()}{st.why[1:]}.**\n\n"
        + _table(
            ["threshold", "round", "pseudo-labels", "of them right", "validation accuracy"], rows
        )  # fmt: skip
        + (
            "\n\n'Of them right': unlabelled images in a sub-folder named like a class, "
            "checked against it (never used for training or choosing)."
            if checked
            else ""
        )
    )


def _data_section(run: Run) -> str:
    names = run.parts["train"].class_names
    counts = {part: images.class_counts() for part, images in run.parts.items()}
    rows = [[name, *(int(counts[part][c]) for part in run.parts)] for c, name in enumerate(names)]
    text = f"## Data\n\nImages per class in {run.folder} (a stratified split):\n\n"
    text += _table(["class", *run.parts], rows)
    if run.warnings:
        text += "\n\nWarnings:\n\n" + "\n".join(f"- {message}" for message in run.warnings)
    return text


def _per_class_section(test: ImageData, predicted: np.ndarray) -> str:
    rows = []
    for c, name in enumerate(test.class_names):
        mine = test.labels == c
        right = int(np.sum(predicted[mine] == c))
        rows.append([name, int(mine.sum()), right, f"{right / max(mine.sum(), 1):.3f}"])
    return "## Per-class test accuracy\n\n" + _table(
        ["class", "test images", "correct", "accuracy"], rows
    )


def _confusion_section(test: ImageData, predicted: np.ndarray) -> str:
    counts = plots.confusion_matrix(test.labels, predicted, test.n_classes)
    rows = [[name, *row] for name, row in zip(test.class_names, counts.tolist(), strict=True)]
    return (
        "## Confusion matrix\n\nRows: the true class; columns: the predicted class.\n\n"
        + _table(["true \\ predicted", *test.class_names], rows)
        + "\n\n![confusion matrix](confusion_matrix.png)"
    )


def _curves_section(record: TrainingRecord) -> str:
    metrics = ("loss", "accuracy", "val_loss", "val_accuracy")
    rows = [
        [row["epoch"], row["phase"], *(f"{row.get(m, np.nan):.3f}" for m in metrics)]
        for row in record.rows
    ]
    return (
        "## Learning curves\n\n![learning curves](learning_curves.png)\n\n"
        "Each phase keeps the weights of its epoch with the lowest validation loss.\n\n"
        + _table(["epoch", "phase", *metrics], rows)
    )


def _misclassified_section(
    run: Run, wrong: np.ndarray, predicted: np.ndarray, probabilities: np.ndarray
) -> str:
    if not len(wrong):
        return "## Misclassified test images\n\nNone: every test image was classified correctly."
    test = run.parts["test"]
    rows = [
        [
            f"`{_shown(run.test_files[i], run.folder)}`",
            test.class_names[test.labels[i]],
            test.class_names[predicted[i]],
            f"{probabilities[i, predicted[i]]:.3f}",
        ]
        for i in wrong
    ]
    drawn = "" if len(wrong) <= GRID_LIMIT else f" (the first {GRID_LIMIT} drawn)"
    return (
        f"## Misclassified test images\n\n{len(wrong)} of {len(test)}{drawn}:\n\n"
        "![misclassified test images](misclassified.png)\n\n"
        + _table(["file", "true class", "predicted", "probability"], rows)
    )


def _shown(file: Path, folder: Path) -> str:
    """``file`` relative to the image folder when it lies inside it."""
    return str(file.relative_to(folder)) if file.is_relative_to(folder) else str(file)


def ftutils_version() -> str:
    """ftutils' installed version; from a clone that was not installed, the version in its
    ``pyproject.toml`` and where it was imported from."""
    try:
        return importlib.metadata.version("ftutils")
    except importlib.metadata.PackageNotFoundError:
        source = Path(__file__).resolve().parent
        try:  # tomllib is Python 3.11+; the [project] table's version line suffices
            text = (source.parent / "pyproject.toml").read_text(encoding="utf-8")
        except OSError:
            text = ""
        found = re.search(r'^version\s*=\s*"([^"]+)"', text, flags=re.MULTILINE)
        version = found.group(1) if found else "unknown"
        return f"{version} (not installed; imported from {source})"


def _provenance_section(run: Run, out: Path) -> str:
    versions = {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "matplotlib": matplotlib.__version__,
        "ftutils": ftutils_version(),
        **{key: str(value) for key, value in distribute.describe().items()},
    }
    settings = [[key, f"`{value}`"] for key, value in run.settings.items()]
    return (
        f"## How this was made\n\n```\n{run.command}\n```\n\n"
        "The same command again resumes an interrupted run (or, once finished, only "
        "rewrites this report). Classify new images with\n\n"
        f"```\npython -m ftutils predict {out / 'model.keras'} IMAGE...\n```\n\n"
        + _table(["setting", "value"], settings)
        + "\n\n"
        + _table(["library", "version"], [[k, v] for k, v in versions.items()])
    )
