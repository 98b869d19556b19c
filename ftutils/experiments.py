"""Sweeps: run an experiment over a grid of settings, one line per run, cached on disk (§2.2, §4.5).

A result is cached under a key built from the sweep's name, every setting of the run, the
TensorFlow/Keras/NumPy versions and the replicas and precision it ran with, so an unchanged
re-run reuses it, while a changed parameter, a library upgrade or another precision runs it
again.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from ftutils import distribute
from ftutils.config import CACHE_DIR


def expand_grid(grid: dict[str, list]) -> list[dict]:
    """Every combination of the grid's values, the last key varying fastest."""
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())]


def config_key(name: str, config: dict) -> str:
    """A stable hash of the sweep name, the full configuration, the library versions and
    where it ran (replicas and precision policy: a bfloat16 or 2-replica result never
    stands in for a float32 one)."""
    versions = {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "replicas": distribute.replicas(),
        "precision": keras.mixed_precision.global_policy().name,
    }
    payload = json.dumps(
        {"name": name, "config": config, "versions": versions}, sort_keys=True, default=str
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def _plain(value):
    """JSON for NumPy scalars and arrays (numbers stay numbers); anything else as text."""
    return value.tolist() if isinstance(value, np.generic | np.ndarray) else str(value)


def run_sweep(
    name: str,
    run: Callable[..., dict],
    grid: dict[str, list],
    fixed: dict | None = None,
    cache_dir: Path | None = None,
    verbose: bool = True,
) -> pd.DataFrame:
    """Call ``run(**fixed, **cell)`` for every cell of ``grid``; return one row per run.

    ``run`` returns a dict of results (e.g. ``{"accuracy": 0.8}``). Each row holds the
    cell's settings, the results and ``seconds`` (the run's own wall time, kept from the
    first run when the result comes from the cache) and ``cached``.
    """
    fixed = fixed or {}
    folder = (cache_dir or CACHE_DIR / "sweeps") / name
    cells = expand_grid(grid)
    rows = []
    for i, cell in enumerate(cells, start=1):
        config = {**fixed, **cell}
        path = folder / f"{config_key(name, config)}.json"
        cached = path.is_file()
        if cached:
            result = json.loads(path.read_text())["result"]
        else:
            start = time.perf_counter()
            result = {**run(**config), "seconds": time.perf_counter() - start}
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"config": config, "result": result}, default=_plain))
        rows.append({**cell, **result, "cached": cached})
        if verbose:
            settings = " ".join(f"{k}={v}" for k, v in cell.items())
            values = " ".join(
                f"{k}={v:.3f}" for k, v in result.items() if isinstance(v, float) and k != "seconds"
            )
            note = "cached" if cached else f"{result['seconds']:.1f} s"
            print(f"[{i}/{len(cells)}] {settings} -> {values} ({note})", flush=True)
    return pd.DataFrame(rows)


def summarize(results: pd.DataFrame, by: list[str], value: str) -> pd.DataFrame:
    """Mean, standard deviation, min, max and count of ``value`` for each group."""
    return results.groupby(by, sort=False)[value].agg(["mean", "std", "min", "max", "count"])
