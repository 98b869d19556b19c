"""scripts/dataset_study.py: its sets, its summaries, the committed file, a tiny run (§2.1)."""

import json

import numpy as np
import pytest

from tests.script_loader import assert_made_by, load_script

study = load_script("dataset_study")


def test_the_imbalanced_set_has_ten_times_fewer_rare_images_and_as_many_in_all():
    counts = study.imbalanced_counts(study.PARAMS, [0, 2, 4, 6, 8], 10)
    assert counts.tolist() == [20, 200] * 5
    assert counts.sum() == study.PARAMS["total_per_class"] * 10
    # a folder of three classes, two of them rare: never fewer than one image
    assert study.imbalanced_counts({"total_per_class": 2, "ratio": 10}, [0, 2], 3).tolist() == [
        1, 5, 1,
    ]  # fmt: skip


def test_class_weights_even_out_the_classes_and_keep_the_mean_weight_at_one():
    labels = np.array([0] * 2 + [1] * 20 + [2] * 20)
    weights = study.balanced_weights(labels, 3)
    assert weights[0] == pytest.approx(10 * weights[1])
    assert np.mean([weights[c] for c in labels]) == pytest.approx(1.0)


def test_the_summary_puts_each_class_where_it_was_rare_or_common():
    params = {"rare": {"even": [0, 2], "odd": [1, 3]}, "total_per_class": 11, "ratio": 10}
    rows = [{"seed": 0, "run": "balanced", "per_class": [0.5, 0.5, 0.5, 0.5]}]
    for name, rare in params["rare"].items():
        for method in study.IMBALANCE_METHODS:
            accuracy = [0.2 if c in rare else 0.9 for c in range(4)]
            rows.append({"seed": 0, "run": f"rare {name}: {method}", "per_class": accuracy})
    summary = study.imbalance_summary(rows, params)
    assert summary["imbalanced"]["when rare"].tolist() == [[0.2] * 4]
    assert summary["imbalanced"]["when common"].tolist() == [[0.9] * 4]
    assert summary["imbalanced"]["balanced accuracy"] == pytest.approx([0.55])
    share = study.imbalanced_counts(params, [0, 2], 4)  # [2, 20, 2, 20]
    expected = (0.2 * 2 * share[0] + 0.9 * 2 * share[1]) / share.sum()
    assert summary["imbalanced"]["at training proportions"] == pytest.approx([expected])
    assert summary["balanced"]["rare"] == pytest.approx([0.5])


def test_the_committed_file_says_how_it_was_made_and_holds_every_run():
    committed = json.loads(study.RESULTS.read_text())
    assert_made_by(committed["provenance"], "python scripts/dataset_study.py", study.PARAMS)
    done = sorted((row["seed"], row["run"]) for row in committed["runs"])
    planned = [(s, r) for s in study.PARAMS["seeds"] for r in study.runs_of(study.PARAMS)]
    assert done == sorted(planned)
    for row in committed["runs"]:
        if row["run"] == "balanced" or row["run"].startswith("rare "):
            assert (
                row["images"] == study.PARAMS["total_per_class"] * 10
                or "oversampling" in row["run"]
            )


def test_a_tiny_configuration_runs_and_builds_the_sets_it_names():
    params = json.loads(json.dumps(study.PARAMS))
    params.update(image_size=32, pool_per_class=4, test_per_class=2, total_per_class=2,
                  richness_per_class=2, originals=1, steps=2, seeds=[0])  # fmt: skip
    tiny = study.Study(params).prepare()
    runs = ["rare even: oversampling", "richness: augmented copies", "richness: narrow"]
    rows = {run: tiny.run(0, run) for run in runs}
    assert rows["rare even: oversampling"]["per_class_images"] == [3] * 10  # 1 x 3 and 3
    assert rows["richness: augmented copies"]["per_class_images"] == [2] * 10
    for row in rows.values():
        assert len(row["per_class"]) == 10 and all(0 <= a <= 1 for a in row["per_class"])
    order = tiny.order(0)
    narrow = tiny.narrow(order[0], 2)
    assert narrow[0] == order[0][0]  # the anchor is its own nearest image
