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


def _two_clusters(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return np.array([[-2.0, 0.0], [2.0, 0.0]])[y] + rng.normal(size=(n, 2)), y


def test_self_training_on_validation_is_kept_only_when_validation_improves():
    x_u, y_u = _two_clusters(400, 0)
    x_val, y_val = _two_clusters(60, 1)
    x_l, y_l = np.array([[-2.0, 3.0], [0.3, -3.0]]), np.array([0, 1])  # a biased labelled set
    first = _nearest_centroid(x_l, y_l)
    known = np.where(np.arange(400) % 2 == 0, y_u, -1)  # half of them checkable
    predict, record = semi_supervised.self_train_on_validation(
        _nearest_centroid, first, x_l, y_l, x_val, y_val, x_u, rounds=2, per_class_step=40,
        thresholds=(0.5, 0.99), y_unlabeled=known,
    )  # fmt: skip
    assert record.kept and record.val_after > record.val_before and predict is not first
    assert record.threshold in (0.5, 0.99) and "kept: validation" in record.why
    assert [(r.threshold, r.round) for r in record.rounds] == [(0.99, 1), (0.99, 2), (0.5, 1),
                                                               (0.5, 2)]  # fmt: skip
    assert all(r.pseudo_accuracy is not None and r.pseudo_labels <= 80 * r.round
               for r in record.rounds)  # fmt: skip
    best = max(r.val_accuracy for r in record.rounds if r.round == 2)
    assert record.val_after == best

    # a labelled-only model already perfect on validation: self-training cannot beat it
    perfect = _nearest_centroid(x_val, y_val)
    predict, record = semi_supervised.self_train_on_validation(
        _nearest_centroid, perfect, x_l, y_l, x_val, y_val, x_u, rounds=1, per_class_step=5,
    )  # fmt: skip
    assert not record.kept and predict is perfect and "not kept" in record.why
    assert all(r.pseudo_accuracy is None for r in record.rounds)  # nothing to check against
