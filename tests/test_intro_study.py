"""scripts/intro_study.py: the committed file is the study notebook 01 says it is (§1).

The notebook ``01_introduction.ipynb`` re-runs seed 0 live and its sanity checks compare that
run with the file (under ``make test``, with nbval). Here the file is checked against the
script.
"""

import json

from tests.script_loader import assert_made_by, load_script

study = load_script("intro_study")
committed = json.loads(study.RESULTS.read_text())
about = committed["provenance"]


def test_the_committed_file_says_how_it_was_made():
    assert_made_by(about, "python scripts/intro_study.py", study.PARAMS)


def test_the_file_holds_at_least_three_planned_seeds_once_each_in_order():
    seeds = [row["seed"] for row in committed["runs"]]
    assert len(seeds) >= 3
    assert seeds == study.PARAMS["seeds"][: len(seeds)]


def test_every_run_measures_the_three_steps():
    for row in committed["runs"]:
        for method in study.METHODS:
            measured = row[method]
            assert 0 <= measured["val"] <= 1 and 0 <= measured["test"] <= 1, (row["seed"], method)
            assert measured["seconds"] > 0, (row["seed"], method)
