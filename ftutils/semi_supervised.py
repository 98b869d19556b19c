"""Self-training with pseudo-labels: learning from unlabelled target images (§4.5).

The article's "small-sample learning relies on extra unlabelled data" describes
semi-supervised learning. Its simplest method, self-training (pseudo-labelling; Scudder
1965, Yarowsky 1995, Lee 2013 "Pseudo-Label", ICML workshop), fits a model on the labelled
images, gives the unlabelled images it is most confident about their predicted class as a
label, and fits again on both, for a few rounds. Wrong pseudo-labels are learned as if they
were true (confirmation bias), so whether it helps has to be measured.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

#: ``fit(x, y)`` trains a model and returns its ``predict(x) -> class probabilities``.
Fit = Callable[[np.ndarray, np.ndarray], Callable[[np.ndarray], np.ndarray]]


def select_confident(
    probabilities: np.ndarray, per_class: int, threshold: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices and predicted labels of the most confident rows, up to ``per_class`` per class.

    Rows are grouped by predicted class and the ``per_class`` with the highest probability
    are kept from each group, if that probability is at least ``threshold``. Taking the same
    number from every class keeps one class the model favours from filling the pseudo-labels.
    Indices are returned in increasing order.
    """
    probabilities = np.asarray(probabilities)
    if probabilities.ndim != 2:
        raise ValueError(
            f"probabilities must be a 2-D (images, classes) array, got shape {probabilities.shape}"
        )
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    chosen = []
    for c in range(probabilities.shape[1]):
        rows = np.flatnonzero((predicted == c) & (confidence >= threshold))
        chosen.append(rows[np.argsort(-confidence[rows], kind="stable")[:per_class]])
    indices = np.sort(np.concatenate(chosen)).astype("int64")
    return indices, predicted[indices]


@dataclasses.dataclass(frozen=True)
class PseudoLabels:
    """The unlabelled images one round of self-training labelled, and the labels it gave."""

    round: int
    indices: np.ndarray
    labels: np.ndarray


def self_train(
    fit: Fit,
    x_labeled: np.ndarray,
    y_labeled: np.ndarray,
    x_unlabeled: np.ndarray,
    rounds: int = 3,
    per_class_step: int = 10,
    threshold: float = 0.0,
) -> tuple[Callable[[np.ndarray], np.ndarray], list[PseudoLabels]]:
    """Self-training: fit on the labels, then ``rounds`` times pseudo-label and refit.

    Round r pseudo-labels up to ``r * per_class_step`` unlabelled images per class (see
    :func:`select_confident`), chosen afresh from the latest model's predictions, and
    refits from scratch on the labelled images plus those. Returns the last model's
    ``predict`` and each round's pseudo-labels (``rounds=0`` is plain supervised training).
    """
    if rounds < 0:
        raise ValueError(f"rounds must be >= 0, got {rounds}")
    if len(x_labeled) != len(y_labeled):
        raise ValueError(
            f"x_labeled has {len(x_labeled)} rows but y_labeled {len(y_labeled)} labels"
        )
    predict = fit(x_labeled, y_labeled)
    history = []
    for r in range(1, rounds + 1):
        indices, labels = select_confident(predict(x_unlabeled), r * per_class_step, threshold)
        history.append(PseudoLabels(r, indices, labels))
        predict = fit(
            np.concatenate([x_labeled, x_unlabeled[indices]]),
            np.concatenate([y_labeled, labels]),
        )
    return predict, history


#: The confidence thresholds :func:`self_train_on_validation` tries (one is chosen on validation).
THRESHOLDS = (0.5, 0.9)


@dataclasses.dataclass(frozen=True)
class Round:
    """One round of self-training at one threshold: how many unlabelled images it labelled,
    how many of those labels were right (when the images' true classes are known, for checking
    only), and the validation accuracy of the model refitted with them."""

    threshold: float
    round: int
    pseudo_labels: int
    pseudo_accuracy: float | None
    val_accuracy: float


@dataclasses.dataclass(frozen=True)
class SelfTraining:
    """What :func:`self_train_on_validation` tried and decided."""

    rounds: list[Round]
    val_before: float
    val_after: float  # the best threshold's last round
    threshold: float  # the threshold chosen on validation
    kept: bool  # whether the self-trained model replaces the labelled-only one

    @property
    def why(self) -> str:
        if self.kept:
            return (
                f"kept: validation {self.val_before:.3f} -> {self.val_after:.3f} "
                f"with threshold {self.threshold}"
            )
        return (
            f"not kept: validation {self.val_before:.3f} -> {self.val_after:.3f} at best "
            f"(threshold {self.threshold}), no better than without the unlabelled images"
        )


def self_train_on_validation(
    fit: Fit,
    first: Callable[[np.ndarray], np.ndarray],
    x_labeled: np.ndarray,
    y_labeled: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    x_unlabeled: np.ndarray,
    rounds: int = 2,
    per_class_step: int = 10,
    thresholds: tuple[float, ...] = THRESHOLDS,
    y_unlabeled: np.ndarray | None = None,
) -> tuple[Callable[[np.ndarray], np.ndarray], SelfTraining]:
    """§4.5's self-training with its threshold chosen on validation, kept only if it helps.

    ``first``: the labelled-only model's ``predict`` (round 0, already trained). For each
    threshold, :func:`self_train` runs ``rounds`` rounds from it (round r takes up to
    ``r * per_class_step`` images per predicted class at or above the threshold), and the
    last round's model is scored on the validation set. The threshold whose model scores
    best there is chosen (ties: the stricter threshold); its model is returned when it
    scores higher on validation than ``first``, else ``first`` is. ``y_unlabeled`` (optional,
    -1 where unknown): the unlabelled images' true classes, used only to report how many
    pseudo-labels were right, never for training or choosing.
    """

    def score(predict) -> float:
        return float(np.mean(np.argmax(predict(x_val), axis=1) == np.asarray(y_val)))

    before = score(first)
    tried, best = [], None
    for threshold in sorted(thresholds, reverse=True):
        scores: list[float] = []

        def fit_after_first(x, y, scores=scores):
            if not scores:  # round 0: the labelled-only model, already trained
                scores.append(before)
                return first
            predict = fit(x, y)
            scores.append(score(predict))
            return predict

        predict, history = self_train(
            fit_after_first, x_labeled, y_labeled, x_unlabeled, rounds, per_class_step, threshold
        )
        val = scores[-1]  # a fixed number of rounds: the last round's model is the candidate
        for step, round_val in zip(history, scores[1:], strict=True):
            checked = None
            if y_unlabeled is not None:
                known = np.asarray(y_unlabeled)[step.indices] >= 0
                if known.any():
                    truth = np.asarray(y_unlabeled)[step.indices][known]
                    checked = float(np.mean(step.labels[known] == truth))
            tried.append(Round(threshold, step.round, len(step.indices), checked, round_val))
        if best is None or val > best[0]:
            best = (val, threshold, predict)
    val_after, threshold, predict = best
    kept = val_after > before
    record = SelfTraining(tried, before, val_after, threshold, kept)
    return (predict if kept else first), record
