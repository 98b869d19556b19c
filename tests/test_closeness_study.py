"""scripts/closeness_study.py: a tiny configuration runs, resumes, and the committed file says
how it was made and holds every run of its plan."""

import json

import numpy as np

from tests.script_loader import load_script

TINY = {
    "source_per_class": 10,
    "pretrain_steps": 3,
    "pretrain_batch": 10,
    "fc_units": 8,
    "target_per_class": 2,
    "val_per_class": 2,
    "test_per_class": 4,
    "steps": 4,
    "head_steps": 2,
    "batch_size": 5,
    "finetune_lrs": [1e-3],
    "seeds": [0],
}


def test_the_far_source_keeps_every_pixel_value_and_moves_them_all_alike():
    study = load_script("closeness_study")
    images = np.arange(2 * 28 * 28, dtype="uint8").reshape(2, 28, 28) % 251
    permuted = study.permute_pixels(images, 1234)
    assert permuted.shape == images.shape
    for before, after in zip(images, permuted, strict=True):
        assert sorted(before.ravel()) == sorted(after.ravel())
    assert not np.array_equal(permuted, images)
    # one permutation for every image: the same positions move to the same places
    order = np.random.default_rng(1234).permutation(28 * 28)
    assert np.array_equal(permuted[1].ravel(), images[1].ravel()[order])


def test_a_tiny_study_runs_writes_every_result_and_resumes(tmp_path):
    study = load_script("closeness_study")
    params = {**study.PARAMS, **TINY}
    out = tmp_path / "closeness.json"
    runs = study.plan(params, sources=["far"])  # the source with the most code of its own
    assert runs == [("far", 0)]
    assert study.plan(params) == [("same", 0), ("near", 0), ("far", 0), ("none", 0)]
    made = study.run_to_file(out, params, runs, "test")
    assert [(r["source"], r["seed"]) for r in made["runs"]] == runs
    for row in made["runs"]:
        assert set(study.RESULT_KEYS) <= set(row)
        assert set(row["finetune_test"]) == {f"{lr:g}" for lr in params["finetune_lrs"]}
        for value in [row["features_test"], *row["finetune_test"].values()]:
            assert 0.0 <= value <= 1.0
    stamp = out.stat().st_mtime_ns
    again = study.run_to_file(out, params, runs, "test")  # resumed: nothing to run
    assert again["runs"] == made["runs"] and out.stat().st_mtime_ns == stamp


def test_no_source_image_is_a_target_validation_or_test_image():
    from ftutils import data

    study = load_script("closeness_study").Study({**load_script("closeness_study").PARAMS, **TINY})
    study.load_data()
    same = study.source_pools["same"]
    for target in (study.pool, study.val, study.test):
        assert len(data.shared_images(same, target)) == 0


def test_the_committed_file_says_how_it_was_made_and_holds_every_run():
    study = load_script("closeness_study")
    committed = json.loads(study.RESULTS.read_text())
    about = committed["provenance"]
    assert about["command"].startswith("python scripts/closeness_study.py")
    assert about["parameters"] == json.loads(json.dumps(study.PARAMS))
    assert about["configuration"]["replicas"] == 1
    stored = [(r["source"], r["seed"]) for r in committed["runs"]]
    assert sorted(stored) == sorted(study.plan(about["parameters"]))


def test_the_rate_is_chosen_on_validation_and_the_advantage_is_fine_tuning_minus_features():
    study = load_script("closeness_study")
    runs = [
        {
            "source": "near",
            "seed": seed,
            "source_test": 0.9,
            "features_val": 0.5,
            "features_test": 0.6,
            "finetune_val": {"0.0001": 0.7, "0.001": val},
            "finetune_test": {"0.0001": 0.9, "0.001": 0.65},
        }
        for seed, val in ((0, 0.8), (1, 0.75))
    ]
    assert study.chosen_rates(runs) == {"near": "0.001"}  # validation, not the better test
    frame = study.per_seed(runs)
    assert list(frame["finetune_test"]) == [0.65, 0.65]
    assert np.allclose(frame["advantage"], 0.05)
