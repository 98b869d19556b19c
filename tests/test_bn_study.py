"""scripts/bn_study.py: the committed file is the study notebook 04_3 says it is (§4.3).

The reproduction itself runs in the notebook: ``04_3_resnet.ipynb`` re-runs the first seed
with the script's code and its sanity checks compare that run with the file (under ``make
test``, with nbval). Here the file is checked against the script and against what every run
must show whatever its numbers.
"""

import json

from tests.script_loader import assert_made_by, load_script

study = load_script("bn_study")
committed = json.loads(study.RESULTS.read_text())
about = committed["provenance"]


def test_the_committed_file_says_how_it_was_made():
    assert_made_by(about, "python scripts/bn_study.py", study.PARAMS)
    assert [row["seed"] for row in committed["runs"]] == study.PARAMS["seeds"]


def test_every_accuracy_is_a_fraction():
    for row in committed["runs"]:
        for run in study.RUNS:
            for name, value in row[run].items():
                if "accuracy" in name or name == "test predictions changed":
                    assert 0 <= value <= 1, (row["seed"], run, name)


def test_every_run_holds_the_invariants_of_its_arm():
    for row in committed["runs"]:
        seed, frozen, free = row["seed"], row["BN frozen"], row["BN trainable"]
        assert row["same start"] == {arm: True for arm in study.ARMS}, seed
        # frozen BN: the moving statistics never move, and training mode computes as inference
        # mode, at the start (the head-only run) as at the end
        assert frozen["statistics drift"] == 0 and frozen["training/inference gap"] == 0, seed
        assert frozen["train accuracy, training mode"] == frozen["train accuracy, inference mode"]
        start = row["head only"]["train accuracy, inference mode"]
        assert frozen["start: train accuracy, training mode"] == start, seed
        # trainable BN: the statistics move, and the two modes differ
        assert free["statistics drift"] > 0 and free["training/inference gap"] > 0, seed
