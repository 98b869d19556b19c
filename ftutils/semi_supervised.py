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
