"""scripts/augment_finetune_study.py: the committed file is the study notebook 03_5 says it is
(§3.5), and the script runs end to end at a tiny configuration.

The notebook ``03_5_data_augmentation.ipynb`` loads the file, plots it and judges it; here the
file is checked against the script and against what every run must show whatever its numbers.
"""

import json

import numpy as np

from tests.script_loader import assert_made_by, load_script

study = load_script("augment_finetune_study")


def committed():
    return json.loads(study.RESULTS.read_text())


def test_the_committed_file_says_how_it_was_made():
    content = committed()
    assert_made_by(content["provenance"], "python scripts/augment_finetune_study.py", study.PARAMS)
    assert [row["seed"] for row in content["runs"]] == study.PARAMS["seeds"]


def test_every_run_is_kept_at_its_best_validation_check():
    p = study.PARAMS
    for row in committed()["runs"]:
        for arm in study.ARMS:
            images = 10 * p["images_per_class"]
            assert row[arm]["training examples"] == images * (1 + p["views"] * (arm == "with"))
            for phase in study.PHASES:
                result = row[arm][phase]
                steps = p["head_steps" if phase == "frozen" else "finetune_steps"]
                assert len(result["val_curve"]) == steps // p["check_every"]
                assert result["val_accuracy"] == max(result["val_curve"]), (row["seed"], arm)
                first_best = result["val_curve"].index(max(result["val_curve"])) + 1
                assert result["best_step"] == first_best * p["check_every"]
                for name in study.TESTS:
                    assert 0 <= result[f"{name}_accuracy"] <= 1


def test_the_augmented_pool_is_the_clean_images_then_their_copies():
    from ftutils import data

    images = (np.arange(4 * 28 * 28) % 251).reshape(4, 28, 28).astype("uint8")
    train = data.ImageData(images, np.array([0, 1, 2, 3]), list("abcd"))
    pool = study.augmented_pool(train, study.PARAMS["augment"], views=2, seed=0)
    assert len(pool) == 12 and list(pool.labels) == [0, 1, 2, 3] * 3
    assert (pool.images[:4] == images).all()
    assert not (pool.images[4:8] == images).all()  # the copies are transformed
    again = study.augmented_pool(train, study.PARAMS["augment"], views=2, seed=0)
    assert (again.images == pool.images).all()  # seeded: the same copies again


def test_the_study_runs_at_a_tiny_configuration():
    tiny = {"images_per_class": 2, "val_per_class": 1, "test_per_class": 1, "views": 1,
            "head_steps": 2, "finetune_steps": 2, "check_every": 1, "batch_size": 4,
            "image_size": 32}  # fmt: skip
    row = study.Study({**study.PARAMS, **tiny}).prepare().run(0)
    assert row["with"]["training examples"] == 2 * row["without"]["training examples"] == 40
    for arm in study.ARMS:
        for phase in study.PHASES:
            result = row[arm][phase]
            assert len(result["val_curve"]) == 2
            assert result["val_accuracy"] == max(result["val_curve"])
            assert all(0 <= result[f"{name}_accuracy"] <= 1 for name in study.TESTS)
