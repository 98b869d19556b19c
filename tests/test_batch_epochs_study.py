"""scripts/batch_epochs_study.py: the committed file, the choice rules, and a tiny run.

The committed file ``data/results/batch_epochs_study.json`` holds the study of batch size and
number of epochs that ``04_4_finetuning_workflow.ipynb`` plots. Its full configuration takes
many minutes; here the rules that read it are checked on made-up curves, and the script runs
end to end on a tiny configuration (2 images per class, 2 epochs).
"""

import json

import pytest

from tests.script_loader import assert_made_by, load_script


def test_the_committed_file_says_how_it_was_made_and_holds_every_run():
    study = load_script("batch_epochs_study")
    committed = json.loads(study.RESULTS.read_text())
    assert_made_by(committed["provenance"], "python scripts/batch_epochs_study.py", study.PARAMS)
    runs = [(r["seed"], r["batch_size"], r["learning_rate"]) for r in committed["runs"]]
    assert sorted(runs) == sorted(study.plan(study.PARAMS))
    for run in committed["runs"]:  # every epoch of every run recorded, no early stopping
        for key in ("val_loss", "val_accuracy", "test_accuracy", "epoch_seconds"):
            assert len(run[key]) == study.PARAMS["epochs"], key


def _run(seed, batch, lr, val_loss, val_accuracy):
    return {"seed": seed, "batch_size": batch, "learning_rate": lr, "val_loss": val_loss,
            "val_accuracy": val_accuracy}  # fmt: skip


def test_each_rule_chooses_the_rate_and_epoch_on_validation_only():
    study = load_script("batch_epochs_study")
    runs = [
        _run(0, 8, 1e-4, [0.50, 0.60, 0.70], [0.80, 0.82, 0.85]),  # lowest loss early
        _run(0, 8, 1e-5, [0.55, 0.54, 0.53], [0.79, 0.80, 0.81]),  # lowest loss at the end
        _run(0, 32, 1e-4, [0.60, 0.58, 0.59], [0.70, 0.72, 0.72]),
    ]
    stop = study.choose(runs, "stop")
    assert stop[0, 8][0]["learning_rate"] == 1e-4 and stop[0, 8][1] == 0
    assert stop[0, 32][1] == 1
    fixed = study.choose(runs, "fixed", fixed_epochs=3)
    assert fixed[0, 8][0]["learning_rate"] == 1e-5 and fixed[0, 8][1] == 2
    by_accuracy = study.choose(runs, "stop on accuracy")
    assert by_accuracy[0, 8][0]["learning_rate"] == 1e-4 and by_accuracy[0, 8][1] == 2
    assert by_accuracy[0, 32][1] == 1  # a tie: the first epoch that reaches it
    with pytest.raises(ValueError, match="unknown rule"):
        study.choose(runs, "test")


def test_a_tiny_configuration_runs_end_to_end_and_resumes(tmp_path):
    study = load_script("batch_epochs_study")
    params = json.loads(json.dumps(study.PARAMS)) | {
        "per_class": 2, "val_per_class": 2, "test_per_class": 2, "head_epochs": 2,
        "seeds": [0], "batch_sizes": [8], "learning_rates": [1e-4], "epochs": 2,
    }  # fmt: skip
    out = tmp_path / "tiny.json"
    study.run_to_file(out, params, study.plan(params), "test")
    (row,) = json.loads(out.read_text())["runs"]
    assert len(row["val_loss"]) == len(row["test_accuracy"]) == 2
    assert all(0 <= a <= 1 for a in row["test_accuracy"] + row["val_accuracy"])
    written = out.stat().st_mtime_ns
    study.run_to_file(out, params, study.plan(params), "test")  # nothing left to run
    assert out.stat().st_mtime_ns == written
