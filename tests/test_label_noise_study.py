"""scripts/label_noise_study.py: its losses, one seed at a tiny configuration, and the committed
file that notebook 03_1 reads (§3.1).

The notebook re-runs seed 0 live and its sanity checks compare that run with the file.
"""

import json

import numpy as np
import pytest
import tensorflow as tf

from tests.script_loader import assert_made_by, load_script

study = load_script("label_noise_study")

TINY = {
    **study.PARAMS,
    "images_per_class": 12,
    "val_per_class": 4,
    "epochs": 3,
    "batch_size": 8,
    "noise_levels": [0.0, 0.5],
    "l2_strengths": [1.0],
    "seeds": [0, 1],
}


def tiny_study():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 16)
    centres = rng.normal(size=(3, 6)) * 3
    x_pool = centres[labels] + rng.normal(size=(48, 6))
    test_labels = np.repeat(np.arange(3), 5)
    x_test = centres[test_labels] + rng.normal(size=(15, 6))
    return study.Study(TINY).with_features(x_pool, labels, x_test, test_labels, 3)


def test_flip_labels_flips_exactly_the_fraction_to_other_classes():
    labels = np.repeat(np.arange(10), 10)
    for fraction in (0.0, 0.2, 0.4):
        noisy = study.flip_labels(labels, fraction, 10, seed=3)
        assert np.sum(noisy != labels) == round(fraction * len(labels))
        assert set(noisy) <= set(range(10))


def test_the_losses_meet_their_definitions():
    y = tf.constant(np.eye(4, dtype="float32")[[0, 1, 2, 3, 1]])
    z = tf.constant(np.random.default_rng(1).normal(size=(5, 4)).astype("float32"))
    p = tf.nn.softmax(z).numpy()
    p_true = p[np.arange(5), [0, 1, 2, 3, 1]]
    ce = study.loss_on_logits("cross-entropy", {})(y, z).numpy()
    np.testing.assert_allclose(ce, -np.log(p_true), rtol=1e-5)
    mae = study.loss_on_logits("MAE", {})(y, z).numpy()
    # |p - y| summed over the classes is 2 (1 - p_true)
    np.testing.assert_allclose(mae, 2 * (1 - p_true) / 4, rtol=1e-5)
    gce = study.loss_on_logits("GCE", {"q": 0.7})(y, z).numpy()
    np.testing.assert_allclose(gce, (1 - p_true**0.7) / 0.7, rtol=1e-5)
    near_ce = study.loss_on_logits("GCE", {"q": 1e-3})(y, z).numpy()  # q -> 0: cross-entropy
    np.testing.assert_allclose(near_ce, ce, rtol=2e-3)
    unsmoothed = study.loss_on_logits("label smoothing", {"epsilon": 0.0})(y, z).numpy()
    np.testing.assert_allclose(unsmoothed, ce, rtol=1e-5)
    with pytest.raises(ValueError, match="unknown loss"):
        study.loss_on_logits("equivariant", {})


def test_one_seed_at_a_tiny_configuration_trains_every_head():
    tiny = tiny_study()
    row = tiny.run(0)
    assert row["seed"] == 0
    heads = row["heads"]
    assert [(h["noise"], h["loss"], h["l2"]) for h in heads] == [
        (s["noise"], s["loss"], s["l2"]) for s in tiny.specs()
    ]
    assert len(heads) == 2 * (len(TINY["losses"]) + len(TINY["l2_strengths"]))
    for h in heads:
        for measure in ("val_accuracy", "test_accuracy", "fits_given_labels", "train_accuracy"):
            assert 0 <= h[measure] <= 1
        assert (h["memorised"] is None) == (h["noise"] == 0)
        if h["noise"] == 0:  # clean labels: the given labels are the true ones
            assert h["fits_given_labels"] == h["train_accuracy"]
    penalised = [h for h in heads if h["l2"] > 0]
    plain = {h["noise"]: h for h in heads if h["l2"] == 0 and h["loss"] == "cross-entropy"}
    for h in penalised:  # the L2 term shrinks the weights
        assert h["weight_norm"] < plain[h["noise"]]["weight_norm"]


committed = json.loads(study.RESULTS.read_text())


def test_the_committed_file_says_how_it_was_made_and_holds_every_seed():
    assert_made_by(committed["provenance"], "python scripts/label_noise_study.py", study.PARAMS)
    assert [row["seed"] for row in committed["runs"]] == study.PARAMS["seeds"]
    specs = study.Study().specs()
    for row in committed["runs"]:
        assert [(h["noise"], h["loss"], h["l2"]) for h in row["heads"]] == [
            (s["noise"], s["loss"], s["l2"]) for s in specs
        ]
