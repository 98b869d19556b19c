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
