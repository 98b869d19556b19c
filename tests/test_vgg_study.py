"""scripts/vgg_study.py: the committed file is the study the notebook 04_2 says it is.

The reproduction itself runs in the notebook: ``04_2_vgg.ipynb`` re-runs the first seed with
the script's code and its sanity checks compare that run with the file (under ``make test``,
with nbval). Here the file is checked against the script and against the schedule it claims.
"""

import json

from tests.script_loader import load_script

study = load_script("vgg_study")
committed = json.loads(study.RESULTS.read_text())
about = committed["provenance"]


def test_the_committed_file_says_how_it_was_made():
    for key in ("command", "parameters", "versions", "configuration", "machine", "weights",
                "started", "finished"):  # fmt: skip
        assert key in about, key
    assert about["command"].startswith("python scripts/vgg_study.py")
    assert about["parameters"] == json.loads(json.dumps(study.PARAMS))
    assert about["configuration"]["replicas"] == 1
    assert [row["seed"] for row in committed["runs"]] == study.PARAMS["seeds"]


def test_every_run_follows_the_budget_then_convergence_schedule():
    p = about["parameters"]
    for row in committed["runs"]:
        for name in study.SCORES:
            assert 0 <= row[name] <= 1, (row["seed"], name)
        for method in study.METHODS:
            passes, best = len(row[f"{method}, val_accuracy"]), row[f"{method}, best pass"]
            assert 1 <= best <= passes <= p["max_epochs"], (row["seed"], method)
            # it stopped `patience` passes after its best one, or at the cap, never before
            # the budget was spent
            assert passes == min(p["max_epochs"], max(p["budget_epochs"], best + p["patience"]))
