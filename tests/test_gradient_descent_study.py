"""scripts/gradient_descent_study.py: the script at a tiny configuration, and the committed files.

``03_2_gradient_descent.ipynb`` loads the committed results, re-runs the chosen learning rate of
the rules part live and compares it with the file (under ``make test``, with nbval).
"""

import json

import keras
import numpy as np
import pytest

from tests.script_loader import assert_made_by, load_script

study_module = load_script("gradient_descent_study")


@pytest.fixture(scope="module")
def tiny():
    """Random 32-px images of 3 classes: 6 per class in the pool (2 held out), 2 to test."""
    from ftutils import data, models

    rng = np.random.default_rng(0)
    names = ("a", "b", "c")

    def images(per_class):
        labels = np.repeat(np.arange(3), per_class)
        pixels = rng.integers(0, 256, size=(len(labels), 32, 32, 3), dtype=np.uint8)
        return data.ImageData(pixels, labels, names)

    params = dict(study_module.PARAMS, image_size=32, images_per_class=4, val_per_class=2,
                  test_per_class=2, seeds=[0, 1, 2], rule_alphas=[0.01], max_steps=6,
                  patience=2, layer_alphas=[0.01], layer_epochs=1, layer_batch=4)  # fmt: skip
    extractor = models.build_classifier("mobilenet_v2", 3, 32)
    return study_module.Study(params).prepare(images(6), images(2), extractor)


def test_every_rule_stops_within_the_budget_and_the_article_rule_at_its_first_half(tiny):
    row = tiny.rules(0.01)
    assert row["part"] == "rules" and len(row["seeds"]) == 3
    for seed in row["seeds"]:
        assert seed["fixed budget"]["steps"] == 6
        article = seed["article"]["steps"]
        assert article == min(seed["tolerance only"]["steps"], seed["threshold only"]["steps"])
        assert seed["early stopping"]["kept"] <= seed["early stopping"]["steps"] <= 6
        assert len(seed["threshold grid"]) == len(tiny.params["threshold_grid"])
        assert 0 <= seed["budget_val_accuracy"] <= 1


def test_the_layer_starts_as_the_frozen_base_and_both_arms_are_measured(tiny):
    from ftutils import models

    a_pool, _ = tiny.below_layer()
    top = study_module.TopLayer(models.base_of(tiny.extractor), "Conv_1", 3, seed=0)
    features = top.features(a_pool).numpy()
    # Under make test-distributed the frozen base computes in bfloat16 (8 significant bits:
    # measured, the largest difference was 0.045 on features up to 5.3), else in float32.
    float32 = keras.mixed_precision.global_policy().name == "float32"
    atol = 1e-4 if float32 else 2e-2 * np.abs(tiny.x_pool).max()
    assert np.allclose(features, tiny.x_pool, atol=atol)
    row = tiny.layer(0)
    for arm in study_module.ARMS:
        assert 0 <= row[arm]["0.01"]["val"] <= 1 and 0 <= row[arm]["0.01"]["test"] <= 1


@pytest.mark.parametrize("part", study_module.PARTS)
def test_the_committed_file_says_how_it_was_made(part):
    path = study_module.RESULTS[part]
    if not path.is_file():
        pytest.skip(f"{path.name} not committed")
    committed = json.loads(path.read_text())
    assert_made_by(
        committed["provenance"], "python scripts/gradient_descent_study.py", study_module.PARAMS
    )
    runs = [row["run"] for row in committed["runs"]]
    planned = study_module.PARAMS["rule_alphas" if part == "rules" else "seeds"]
    assert runs == planned
