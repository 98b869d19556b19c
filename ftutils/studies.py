"""Committed studies: experiments too long for the tests, run by ``scripts/*_study.py``.

A study commits its results as JSON under ``data/results/`` with how they were made (the
command, parameters, library versions, configuration, machine, commit and dates); the
notebook that plots them loads the script (:func:`load_script`) to re-run one configuration
with the same code, and prints that record.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import platform
import subprocess
from pathlib import Path
from types import ModuleType

from .config import PROJECT_DIR

#: What the committed studies ran on.
SHARED_CPU = "a shared 2-core CPU, other jobs running: seconds are indicative only"


def now() -> str:
    """The current UTC time, to the second, as the studies record it."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def git_commit() -> str:
    """The project's checked-out commit, or ``"unknown"`` outside a git checkout."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_DIR, capture_output=True, text=True,
            check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def record(command: str, parameters: dict, weights: str, machine_note: str = SHARED_CPU) -> dict:
    """The provenance of a study run now: ``command`` with ``parameters``, on ``weights``."""
    import keras
    import numpy as np
    import tensorflow as tf

    from . import distribute

    described = distribute.describe()
    return {
        "command": command,
        "parameters": parameters,
        "versions": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "numpy": np.__version__,
        },
        "configuration": {k: described[k] for k in ("replicas", "precision", "deterministic")},
        "machine": {
            "platform": platform.platform(),
            "processor": platform.machine(),
            "cpus": os.cpu_count(),
            "note": machine_note,
        },
        "git_commit": git_commit(),
        "started": now(),
        "weights": weights,
    }


def write_json(path: Path, content: dict) -> None:
    """Write ``content`` to ``path`` through a temporary file, so an interrupted study never
    leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(content, indent=1, ensure_ascii=False) + "\n")
    temporary.replace(path)


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` of the project, loaded as a module called ``name``."""
    spec = importlib.util.spec_from_file_location(name, PROJECT_DIR / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def summary(made: dict, source: str) -> str:
    """What a notebook prints about a study's results: the file (or "this notebook") they
    come from and the record ``made`` of how they were made."""
    machine = made["machine"]
    return "\n".join(
        [
            f"results:  {source}",
            f"command:  {made['command']}",
            f"ran:      {made['started']} to {made.get('finished', '(not finished)')} UTC",
            f"machine:  {machine['platform']}, {machine['cpus']} CPUs, {machine['note']}",
            "versions: " + ", ".join(f"{k} {v}" for k, v in made["versions"].items()),
            "setup:    " + ", ".join(f"{k} {v}" for k, v in made["configuration"].items()),
            f"weights:  {made['weights']}",
        ]
    )


class ResultsFile:
    """A study's results file, written after every run so an interrupted study keeps what it
    finished. A file made before with the same parameters and weights is resumed: its runs
    are kept, and :meth:`has` tells which need not run again. ``key`` names the fields of a
    run that identify it (e.g. ``("seed",)``).
    """

    def __init__(self, path: Path, made: dict, key: tuple[str, ...] = ("seed",)):
        self.path, self.key = Path(path), key
        self.content = {"provenance": made, "runs": []}
        if self.path.is_file():
            previous = json.loads(self.path.read_text())
            as_stored = json.loads(json.dumps(made))  # tuples read back as lists
            if all(previous["provenance"][k] == as_stored[k] for k in ("parameters", "weights")):
                self.content["runs"] = previous["runs"]
                made["started"] = previous["provenance"]["started"]

    def has(self, **run) -> bool:
        """Whether the file already holds the run with these key fields."""
        wanted = tuple(run[k] for k in self.key)
        return any(tuple(row[k] for k in self.key) == wanted for row in self.content["runs"])

    def save(self, row: dict) -> None:
        """Add one finished run and write the file (atomically)."""
        self.content["runs"].append(row)
        self.content["provenance"]["finished"] = now()
        write_json(self.path, self.content)
