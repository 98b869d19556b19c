"""scripts/small_sample_study.py: the committed file and one small configuration re-run.

The committed file ``data/results/small_sample_study.json`` holds the ten-seed study the
notebook ``04_5_small_sample_learning.ipynb`` reads. Here one seed's smallest runs (1 image
per class, seed 0: the k-shot run and the early-stopping run) are made again, with the
activations of that seed's images only. Op determinism makes a re-run on the same machine
bit-identical; another CPU or thread count moves the 4th decimal of the activations, a few
borderline images, so the accuracies must agree within ``TOLERANCE`` (0.03: 15 of the 500
test images).
"""

import json

import pytest

from tests.script_loader import assert_made_by, load_script, skip_unless_configuration_of_the_study

TOLERANCE = 0.03
SHOTS, SEED = 1, 0


def test_the_committed_file_says_how_it_was_made_and_holds_every_run():
    study = load_script("small_sample_study")
    committed = json.loads(study.RESULTS.read_text())
    assert_made_by(committed["provenance"], "python scripts/small_sample_study.py", study.PARAMS)
    runs = [(r["kind"], r["shots"], r["seed"]) for r in committed["runs"]]
    assert sorted(runs) == sorted(study.plan(study.PARAMS))


def test_the_plan_keeps_only_the_seeds_and_kinds_asked_for():
    study = load_script("small_sample_study")
    runs = study.plan(study.PARAMS, seeds=[3], kinds=["pseudo"])
    assert runs == [("pseudo", k, 3) for k in study.PARAMS["pseudo_shots"]]


def test_one_small_configuration_reproduces_the_committed_numbers():
    skip_unless_configuration_of_the_study()
    module = load_script("small_sample_study")
    committed = json.loads(module.RESULTS.read_text())
    params = json.loads(json.dumps(committed["provenance"]["parameters"]))
    params["seeds"] = [SEED]  # only this seed's images through the network
    expected = {(r["kind"], r["shots"], r["seed"]): r for r in committed["runs"]}
    study = module.Study(params).build()
    for kind, metrics in [
        ("kshot", ["last layer test", "top block test", "last layer val"]),
        ("early stop", ["val: test", "small val: test", "small val: reported"]),
    ]:
        row = study.run(kind, SHOTS, SEED)
        for metric in metrics:
            assert row[metric] == pytest.approx(
                expected[kind, SHOTS, SEED][metric], abs=TOLERANCE
            ), (kind, metric)


def test_the_committed_robustness_file_says_how_it_was_made_and_holds_every_run():
    study = load_script("small_sample_study")
    committed = json.loads(study.SHIFT_RESULTS.read_text())
    params = study.PARAMS | study.SHIFT_PARAMS
    assert_made_by(committed["provenance"], "python scripts/small_sample_study.py", params)
    runs = [(r["kind"], r["shots"], r["seed"]) for r in committed["runs"]]
    assert sorted(runs) == sorted(study.plan(params))
    for run in committed["runs"]:  # every model scored on every shifted test set
        prefixes = (["last layer test", "top block test"] if run["kind"] == "kshot"
                    else ["labelled only test", "self-trained test"])  # fmt: skip
        for prefix in prefixes:
            for name in study.SHIFT_PARAMS["shifts"]:
                assert 0 <= run[f"{prefix} {name}"] <= 1, (prefix, name)


def test_the_robustness_part_plans_no_early_stopping_and_its_own_sizes():
    study = load_script("small_sample_study")
    params = study.PARAMS | study.SHIFT_PARAMS
    runs = study.plan(params, seeds=[4])
    assert runs == [("kshot", k, 4) for k in params["shift_shots"]] + [
        ("pseudo", k, 4) for k in params["pseudo_shots"]
    ]


def test_the_share_kept_is_the_accuracy_above_chance_that_survives_the_shift():
    study = load_script("small_sample_study")
    run = {"kind": "kshot", "shots": 1, "seed": 0, "last layer test": 0.5,
           "last layer test a": 0.3, "last layer test b": 0.1,
           "top block test": 0.5, "top block test a": 0.5, "top block test b": 0.5}  # fmt: skip
    scores = study.shift_scores([run], ["a", "b"], chance=0.1).set_index(["model", "test set"])
    assert scores.loc[("last layer", "a"), "kept"] == pytest.approx(0.5)
    assert scores.loc[("last layer", "b"), "kept"] == pytest.approx(0.0)  # down to chance
    assert scores.loc[("last layer", "mean of shifts"), "shifted"] == pytest.approx(0.2)
    assert scores.loc[("last layer", "mean of shifts"), "drop"] == pytest.approx(0.3)
    assert scores.loc[("top block", "mean of shifts"), "kept"] == pytest.approx(1.0)


def test_the_shifts_are_the_held_out_families_of_section_3_5():
    import numpy as np

    from ftutils import shift_families

    study = load_script("small_sample_study")
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype="uint8")
    spec = study.SHIFT_PARAMS["shifts"]
    assert np.array_equal(study.shifted_images(images, spec["inverted"]), 255 - images)
    assert np.array_equal(
        study.shifted_images(images, spec["noise"]), shift_families.gaussian_noise(images, 40.0, 9)
    )
