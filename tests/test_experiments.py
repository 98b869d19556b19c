"""The sweep runner (§2.2, §4.5): grid expansion, cache keys, cache reuse and invalidation."""

import json

import numpy as np
import pandas as pd
import pytest

from ftutils import cache, experiments


class Counter:
    """A stand-in experiment that records every call it gets."""

    def __init__(self):
        self.calls = []

    def __call__(self, **config):
        self.calls.append(config)
        return {"accuracy": 0.5 + config["per_class"] / 1000 + config.get("lr", 0)}

    def fingerprint(self):
        """What its results depend on (ftutils.cache.key): nothing it holds, calls only
        records them."""
        return None


def test_expand_grid_is_the_full_product_with_the_last_key_fastest():
    cells = experiments.expand_grid({"method": ["a", "b"], "per_class": [5, 20, 100]})
    assert len(cells) == 6
    assert cells[:3] == [
        {"method": "a", "per_class": 5},
        {"method": "a", "per_class": 20},
        {"method": "a", "per_class": 100},
    ]
    assert cells[3] == {"method": "b", "per_class": 5}
    assert experiments.expand_grid({"seed": []}) == []


def test_config_key_is_stable_and_ignores_key_order():
    key = experiments.config_key("sweep", {"per_class": 5, "seed": 0, "lr": 1e-3})
    assert key == experiments.config_key("sweep", {"lr": 1e-3, "seed": 0, "per_class": 5})
    assert len(key) == 20 and int(key, 16) >= 0


def test_config_key_changes_with_any_value_the_name_or_the_library_version(monkeypatch):
    config = {"per_class": 5, "seed": 0}
    key = experiments.config_key("sweep", config)
    assert experiments.config_key("sweep", {**config, "seed": 1}) != key
    assert experiments.config_key("sweep", {**config, "epochs": 3}) != key
    assert experiments.config_key("other sweep", config) != key
    monkeypatch.setattr(cache.tf, "__version__", "9.99.0")
    assert experiments.config_key("sweep", config) != key


def test_a_rerun_reuses_every_result_without_calling_the_experiment(tmp_path):
    run = Counter()
    grid = {"per_class": [5, 20], "seed": [0, 1]}
    first = experiments.run_sweep("s", run, grid, {"lr": 0.1}, cache_dir=tmp_path, verbose=False)
    assert len(run.calls) == 4 and not first["cached"].any()
    assert len(list((tmp_path / "s").glob("*.json"))) == 4

    again = experiments.run_sweep("s", run, grid, {"lr": 0.1}, cache_dir=tmp_path, verbose=False)
    assert len(run.calls) == 4  # not called again
    assert again["cached"].all()
    cols = ["per_class", "seed", "accuracy", "seconds"]
    assert again[cols].equals(first[cols])  # same results, first run's wall time kept


def test_a_changed_parameter_reruns_only_the_runs_it_changes(tmp_path):
    run = Counter()
    fixed = {"lr": 0.1}
    experiments.run_sweep(
        "s", run, {"per_class": [5, 20]}, fixed, cache_dir=tmp_path, verbose=False
    )
    assert len(run.calls) == 2

    grown = experiments.run_sweep(
        "s", run, {"per_class": [5, 20, 100]}, fixed, cache_dir=tmp_path, verbose=False
    )
    assert run.calls[2:] == [{"lr": 0.1, "per_class": 100}]  # only the new cell ran
    assert grown["cached"].tolist() == [True, True, False]

    changed = experiments.run_sweep(
        "s", run, {"per_class": [5, 20]}, {"lr": 0.2}, cache_dir=tmp_path, verbose=False
    )
    assert [c["lr"] for c in run.calls[3:]] == [0.2, 0.2]  # a fixed setting changes every run
    assert not changed["cached"].any()
    assert changed["accuracy"].tolist() == pytest.approx([0.705, 0.72])


def test_the_cache_file_records_the_configuration_and_the_result(tmp_path):
    experiments.run_sweep("s", Counter(), {"per_class": [5]}, cache_dir=tmp_path, verbose=False)
    (path,) = (tmp_path / "s").glob("*.json")
    stored = json.loads(path.read_text())
    assert stored["config"] == {"per_class": 5}
    assert stored["result"]["accuracy"] == pytest.approx(0.505)
    assert path.stem == experiments.config_key("s", {"per_class": 5}, Counter())


def test_numpy_scalar_results_come_back_from_the_cache_as_numbers(tmp_path):
    def run(per_class):
        return {"accuracy": np.float32(0.75)}

    experiments.run_sweep("s", run, {"per_class": [5]}, cache_dir=tmp_path, verbose=False)
    cached = experiments.run_sweep("s", run, {"per_class": [5]}, cache_dir=tmp_path, verbose=False)
    assert cached["accuracy"].iloc[0] == pytest.approx(0.75)


def test_summarize_gives_spread_over_seeds():
    results = pd.DataFrame({"method": ["a", "a", "b", "b"], "accuracy": [0.6, 0.8, 0.5, 0.5]})
    table = experiments.summarize(results, ["method"], "accuracy")
    assert table.loc["a", "mean"] == pytest.approx(0.7)
    assert table.loc["a", "min"] == 0.6 and table.loc["a", "max"] == 0.8
    assert table.loc["b", "std"] == 0 and table["count"].tolist() == [2, 2]


FEATURES = np.zeros(4)  # what a notebook's run function reads from its globals
MODEL = np.zeros(2)  # state a run changes, as training a notebook's model does


def _run_on_features(per_class):
    MODEL[:] = 0  # reset, then "train": the result does not depend on the runs before
    MODEL[:] += per_class
    return {"accuracy": float(FEATURES[:per_class].sum() + MODEL.sum())}


def test_a_sweep_reruns_when_the_data_its_run_function_reads_changes(tmp_path, monkeypatch):
    import tests.test_experiments as module

    def sweep():
        return experiments.run_sweep(
            "s", _run_on_features, {"per_class": [1, 2]}, cache_dir=tmp_path, verbose=False
        )

    assert not sweep()["cached"].any()
    MODEL[:] = 0  # as a fresh notebook has it: every key was made before the first run
    assert sweep()["cached"].all()
    monkeypatch.setattr(module, "FEATURES", np.ones(4))  # other data, same settings
    again = sweep()
    assert not again["cached"].any()
    assert again["accuracy"].tolist() == [3.0, 6.0]
