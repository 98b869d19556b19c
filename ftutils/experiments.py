"""Sweeps: run an experiment over a grid of settings, one line per run, cached on disk (§2.2, §4.5).

A result is cached under a key built from the sweep's name, every setting of the run, the
run function (its code, the values bound to it, and the data it reads from its globals,
such as a notebook's ``train`` images or ``pooled`` features), the TensorFlow/Keras/NumPy
versions and the replicas and precision it ran with (``ftutils.cache.key``), so an
unchanged re-run reuses it, while a changed parameter or dataset, an edited run function, a
library upgrade or another precision runs it again. A sweep that trains the same model many
times resets it between runs with :func:`snapshot` / :func:`restore`.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from ftutils import cache
from ftutils.config import CACHE_DIR


def expand_grid(grid: dict[str, list]) -> list[dict]:
    """Every combination of the grid's values, the last key varying fastest."""
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())]


def config_key(name: str, config: dict, run: Callable | None = None) -> str:
    """The cache key of one run: the sweep's name, its full configuration, the run function
    (code, bound values, the global data it reads) and where it ran (``ftutils.cache.key``)."""
    return cache.key(name, config, None if run is None else cache.key(run))


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

    Every run's key is made before the first run, from the globals ``run`` reads as they
    are then: a run that trains a model it reads from the notebook changes it, and the
    runs after it would otherwise get keys that depend on which runs came from the cache.
    Such a run must reset what it changes (set the model's weights from ones it also reads,
    as 04_5 does), so that its result does not depend on the runs before it.
    """
    fixed = fixed or {}
    folder = (cache_dir or CACHE_DIR / "sweeps") / name
    cells = expand_grid(grid)
    code = cache.key(run)  # once: keying a run that reads a notebook's model takes seconds
    paths = [folder / f"{cache.key(name, {**fixed, **cell}, code)}.json" for cell in cells]
    rows = []
    for i, (cell, path) in enumerate(zip(cells, paths, strict=True), start=1):
        config = {**fixed, **cell}
        cached = path.is_file()
        if cached:
            result = json.loads(path.read_text())["result"]
        else:
            start = time.perf_counter()
            result = {**run(**config), "seconds": time.perf_counter() - start}
            text = json.dumps({"config": config, "result": result}, default=_plain)
            cache.write_atomically(path, lambda temporary, text=text: temporary.write_text(text))
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


@dataclasses.dataclass(frozen=True)
class TrainingState:
    """Everything one training run changes in a compiled model (see :func:`snapshot`)."""

    variables: list[np.ndarray]  # weights, BatchNormalization statistics, dropout RNG state
    optimizer: list[np.ndarray]  # step count, moments, learning rate


def snapshot(model: keras.Model) -> TrainingState:
    """Copy a compiled model's variables and optimizer state, to :func:`restore` later (§2.2).

    A sweep that trains the same architecture many times can compile one model once and
    restore a snapshot before every run, instead of building and compiling a new model:
    each compile traces the training step again, which for a whole MobileNetV2 costs about
    25 CPU seconds, more than a small run's training. The optimizer is built here if it is
    not yet, so its fresh state is part of the snapshot; do not change which layers are
    trainable between a snapshot and its restore.
    """
    if getattr(model, "optimizer", None) is None:
        raise ValueError("compile the model before taking a snapshot of its training state")
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    return TrainingState(
        [v.numpy() for v in model.variables], [v.numpy() for v in model.optimizer.variables]
    )


def restore(model: keras.Model, state: TrainingState) -> None:
    """Put a :func:`snapshot` back: the next fit continues exactly as from the snapshot."""
    targets = [*model.variables, *model.optimizer.variables]
    values = [*state.variables, *state.optimizer]
    if len(targets) != len(values):
        raise ValueError(
            f"the snapshot holds {len(values)} variables, the model {len(targets)}: it was taken "
            "from another model, or the trainable layers changed since (take a new snapshot)"
        )
    for variable, value in zip(targets, values, strict=True):
        variable.assign(value)
