"""Self-training with pseudo-labels (§4.5): selection rules and the loop, on toy data."""

import numpy as np
import pytest

from ftutils import semi_supervised


def _nearest_centroid(x, y):
    """A tiny classifier for the tests: softmax over minus squared distances to class means."""
    centroids = np.stack([x[y == c].mean(axis=0) for c in range(2)])

    def predict(z):
        logits = -((z[:, None, :] - centroids[None]) ** 2).sum(axis=-1)
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    return predict


def test_select_confident_takes_the_most_confident_per_predicted_class():
    probabilities = np.array(
        [[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.99, 0.01], [0.45, 0.55], [0.3, 0.7]]
    )
    indices, labels = semi_supervised.select_confident(probabilities, per_class=2)
    np.testing.assert_array_equal(indices, [0, 2, 3, 5])
    np.testing.assert_array_equal(labels, [0, 1, 0, 1])


def test_select_confident_is_class_balanced_and_respects_the_threshold():
    probabilities = np.array([[0.95, 0.05], [0.9, 0.1], [0.85, 0.15], [0.4, 0.6]])
    indices, labels = semi_supervised.select_confident(probabilities, per_class=1)
    np.testing.assert_array_equal(indices, [0, 3])  # one per class, not the three class-0 rows
    indices, labels = semi_supervised.select_confident(probabilities, 5, threshold=0.88)
    np.testing.assert_array_equal(indices, [0, 1])
    np.testing.assert_array_equal(labels, [0, 0])


@pytest.mark.parametrize(
    ("probabilities", "per_class", "message"),
    [(np.ones(4), 1, "2-D"), (np.ones((4, 2)) / 2, 0, "per_class must be >= 1")],
)
def test_select_confident_rejects_bad_input(probabilities, per_class, message):
    with pytest.raises(ValueError, match=message):
        semi_supervised.select_confident(probabilities, per_class)


def test_self_training_uses_unlabelled_data_to_fix_a_biased_labelled_set():
    rng = np.random.default_rng(0)
    centres = np.array([[-2.0, 0.0], [2.0, 0.0]])
    y_unlabeled = rng.integers(0, 2, 400)
    x_unlabeled = centres[y_unlabeled] + rng.normal(size=(400, 2))
    # one labelled point per class, both far up the y axis and the class-1 one near the boundary
    x_labeled = np.array([[-2.0, 3.0], [0.3, -3.0]])
    y_labeled = np.array([0, 1])

    supervised = _nearest_centroid(x_labeled, y_labeled)
    predict, history = semi_supervised.self_train(
        _nearest_centroid, x_labeled, y_labeled, x_unlabeled, rounds=4, per_class_step=40
    )

    def accuracy(p):
        return np.mean(p(x_unlabeled).argmax(axis=1) == y_unlabeled)

    assert [h.round for h in history] == [1, 2, 3, 4]
    assert [len(h.indices) for h in history] == [80, 160, 240, 320]
    assert accuracy(predict) > accuracy(supervised) + 0.03
    assert accuracy(predict) > 0.95


def test_zero_rounds_is_supervised_training_and_lengths_are_checked():
    x = np.array([[0.0, 0.0], [1.0, 1.0]])
    predict, history = semi_supervised.self_train(_nearest_centroid, x, np.array([0, 1]), x, 0)
    assert history == []
    np.testing.assert_array_equal(predict(x).argmax(axis=1), [0, 1])
    with pytest.raises(ValueError, match="2 rows but y_labeled 1"):
        semi_supervised.self_train(_nearest_centroid, x, np.array([0]), x)
