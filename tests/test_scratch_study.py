"""scripts/scratch_study.py: the committed files are the studies notebooks 04_1 and 04_2 say.

The reproduction itself runs in the notebooks: each re-runs the first seed with the script's
code, up to the equal budget, and its sanity checks compare that run with the file (under
``make test``, with nbval).
Here each file is checked against the script and against the schedule it claims.
"""

import json

import pytest

from tests.script_loader import assert_made_by, load_script

study = load_script("scratch_study")
BACKBONES = sorted(study.PARAMS)


def committed(backbone: str) -> dict:
    return json.loads(study.results_path(backbone).read_text())


@pytest.mark.parametrize("backbone", BACKBONES)
def test_the_committed_file_says_how_it_was_made(backbone):
    about = committed(backbone)["provenance"]
    assert_made_by(about, f"python scripts/scratch_study.py {backbone}", study.PARAMS[backbone])
    assert [row["seed"] for row in committed(backbone)["runs"]] == study.PARAMS[backbone]["seeds"]


@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_run_follows_the_budget_then_convergence_schedule(backbone):
    p = study.PARAMS[backbone]
    for row in committed(backbone)["runs"]:
        for name in study.SCORES:
            assert 0 <= row[name] <= 1, (row["seed"], name)
        for method in study.METHODS:
            passes, best = len(row[f"{method}, val_accuracy"]), row[f"{method}, best pass"]
            assert 1 <= best <= passes <= p["max_epochs"], (row["seed"], method)
            # it stopped `patience` passes after its best one, or at the cap, never before
            # the budget was spent
            assert passes == min(p["max_epochs"], max(p["budget_epochs"], best + p["patience"]))


@pytest.mark.parametrize("backbone", BACKBONES)
def test_the_test_accuracy_after_every_pass_matches_the_budget_score(backbone):
    p = study.PARAMS[backbone]
    for row in committed(backbone)["runs"]:
        for method in study.METHODS:
            curve = row[f"{method}, test_accuracy"]
            assert len(curve) == len(row[f"{method}, val_accuracy"]), (row["seed"], method)
            assert study.accuracy_after(row, method, p["budget_epochs"]) == row[f"{method}, budget"]
            # every run is still training at each of the budgets compared in the notebooks
            assert max(study.BUDGETS) <= len(curve), (row["seed"], method)
