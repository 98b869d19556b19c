"""scripts/dropout_study.py: the committed file is the study notebook 03_4 says it is (§3.4).

The reproduction itself runs in the notebook: ``03_4_dropout.ipynb`` re-runs one configuration
with the script's code and its sanity checks compare that run with the file (under ``make
test``, with nbval). Here the file is checked against the script and against the schedule it
claims.
"""

import json

from tests.script_loader import assert_made_by, load_script

study = load_script("dropout_study")
committed = json.loads(study.RESULTS.read_text())
about = committed["provenance"]


def name(row: dict) -> tuple:
    return tuple(row[k] for k in study.KEY)


def test_the_committed_file_says_how_it_was_made():
    assert_made_by(about, "python scripts/dropout_study.py", study.PARAMS)


def test_the_file_holds_every_planned_run_once():
    assert [name(row) for row in committed["runs"]] == study.plan(study.PARAMS)


def test_every_run_is_kept_at_its_best_validation_check():
    p = study.PARAMS
    for row in committed["runs"]:
        for accuracy in study.ACCURACIES:
            assert 0 <= row[accuracy] <= 1, (name(row), accuracy)
        curve = row["val_curve"]
        assert len(curve) == row["steps"] // p["check_every"], name(row)
        assert row["val_accuracy"] == max(curve), name(row)
        # the first best check: a later one must be better to replace it
        assert row["best_step"] == (curve.index(max(curve)) + 1) * p["check_every"], name(row)
        if row["best_step"] == row["steps"]:  # kept at the last step: no early stopping
            assert row["test_accuracy"] == row["last_test_accuracy"], name(row)


def test_the_longer_budget_starts_as_the_short_one():
    # same seed, same model, same batches: its first `steps` steps are the short run's steps
    p = study.PARAMS
    runs = {name(row): row for row in committed["runs"]}
    for rate in (0.0, p["dropout"]):
        for seed in p["seeds"]:
            short = runs[study.LONG_SETTING, rate, seed, p["steps"]]
            long = runs[study.LONG_SETTING, rate, seed, p["long_steps"]]
            assert long["val_curve"][: len(short["val_curve"])] == short["val_curve"], (rate, seed)


def test_the_small_validation_variant_holds_every_planned_run_once():
    variant = json.loads(study.SMALL_VAL_RESULTS.read_text())
    assert_made_by(
        variant["provenance"],
        "python scripts/dropout_study.py --small-validation",
        study.SMALL_VAL_PARAMS,
    )
    assert [name(row) for row in variant["runs"]] == study.plan(study.SMALL_VAL_PARAMS)
    # its validation set is smaller than its training set: 4 of the 20 per class, 16 train
    p = study.SMALL_VAL_PARAMS
    assert p["val_per_class"] < p["images_per_class"] - p["val_per_class"]
