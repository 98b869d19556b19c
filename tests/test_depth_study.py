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
    assert {"depth", "lpft", "optimizer", "small val"} <= experiments
    for run in committed["runs"]:  # the realistic variant's validation set is no larger
        if run["experiment"] == "small val":
            assert run["val_per_class"] <= run["per_class"], run


def test_a_grid_grows_past_the_end_it_chose_and_not_otherwise():
    study = load_script("depth_study")
    grid = {"sgd": [1e-4, 1e-3, 1e-2], "adam": [1e-5, 1e-4, 1e-3], "momentum": [1e-5, 1e-4]}
    grown = study.extend(grid, {"sgd": 1e-4, "adam": 1e-3, "momentum": 3e-5})
    assert grown == {
        "sgd": [1e-5, 1e-4, 1e-3, 1e-2],
        "adam": [1e-5, 1e-4, 1e-3, 1e-2],
        "momentum": [1e-5, 1e-4],
    }
    assert study.extend(grown, {"sgd": 1e-3, "adam": 1e-4}) == grown
    assert study.extend({"FT": [1e-4]}, {"FT": 1e-4}) == {"FT": [1e-4]}  # fixed in advance


def test_the_held_out_shifts_keep_the_images_and_change_them():
    import numpy as np

    study = load_script("depth_study")
    images = np.zeros((2, 28, 28), dtype="uint8")
    images[:, 8:20, 10:18] = 200  # a bright garment on black
    blurred, shrunk = study.shift(images, "blur"), study.shift(images, "shrunk")
    assert blurred.shape == shrunk.shape == images.shape and blurred.dtype == "uint8"
    assert abs(float(blurred.mean()) - float(images.mean())) < 1.0  # blur keeps the light
    assert 0 < blurred[0, 8, 14] < 200 and blurred[0, 14, 14] == 200  # edges soften only
    assert shrunk[:, :2].max() == shrunk[:, -2:].max() == 0  # the frame stays black
    ratio = (shrunk > 100).sum() / (images > 100).sum()
    assert 0.5 < ratio < 0.8  # about 0.8 x 0.8 of the area


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
