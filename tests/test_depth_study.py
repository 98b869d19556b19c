"""scripts/depth_study.py: one small configuration re-run matches the committed results.

The committed file ``data/results/depth_study.json`` holds the study the notebook
``04_4_finetuning_workflow.ipynb`` plots. Here the smallest configuration (5 training images
per class, seed 0) is run again: the head, then the top block fine-tuned, evaluated on the
validation and test images only (no shifted copies, to stay quick). Op determinism makes a
re-run on the same machine bit-identical; another CPU or thread count changes the 4th decimal,
which can move early stopping by an epoch, so the accuracies must agree within
``TOLERANCE`` (0.03: 15 of 500 validation images, 30 of 1,000 test images).
"""

import json

import pytest

from tests.script_loader import load_script, skip_unless_configuration_of_the_study

TOLERANCE = 0.03
PER_CLASS, SEED = 5, 0


def test_the_committed_file_says_how_it_was_made():
    study = load_script("depth_study")
    committed = json.loads(study.RESULTS.read_text())
    provenance = committed["provenance"]
    for key in ("command", "parameters", "versions", "machine", "started", "finished"):
        assert key in provenance, key
    assert provenance["command"].startswith("python scripts/depth_study.py")
    assert {"tensorflow", "keras", "numpy", "python"} <= set(provenance["versions"])
    experiments = {run["experiment"] for run in committed["runs"]}
    assert {"depth", "lpft", "optimizer"} <= experiments


def test_one_small_configuration_reproduces_the_committed_numbers(monkeypatch, tmp_path):
    skip_unless_configuration_of_the_study()
    study = load_script("depth_study")
    committed = json.loads(study.RESULTS.read_text())
    params = json.loads(json.dumps(committed["provenance"]["parameters"]))
    if PER_CLASS not in params["per_class"]:
        pytest.skip(f"the committed study has no run with {PER_CLASS} images per class")
    expected = {
        run["setting"]: run
        for run in committed["runs"]
        if run["experiment"] == "depth" and run["per_class"] == PER_CLASS and run["seed"] == SEED
    }
    params["shifts"] = {}  # validation and test only
    params["depths"] = {name: params["depths"][name] for name in ("head only", "top block")}
    rows = []
    study.run_unit(PER_CLASS, SEED, params, {"depth"}, set(), rows.append)
    assert [row["setting"] for row in rows] == ["head only", "top block"]
    for row in rows:
        for metric in ("val_accuracy", "test_accuracy"):
            assert row[metric] == pytest.approx(expected[row["setting"]][metric], abs=TOLERANCE), (
                row["setting"],
                metric,
            )
    assert rows[1]["trainable_parameters"] == expected["top block"]["trainable_parameters"]
