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
import re
import subprocess
from pathlib import Path
from types import ModuleType

from .config import PROJECT_DIR
from .errors import ResumeError

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


def imagenet_weights(params: dict) -> str:
    """The ImageNet weights of a study's ``params["backbone"]`` at ``params["image_size"]``, as
    its provenance records them (the weights file by name)."""
    from ftutils import backbones

    weights = backbones.imagenet_weights_path(params["backbone"]).name
    return f"ImageNet {params['backbone']} ({weights}), {params['image_size']} px"


def write_json(path: Path, content: dict) -> None:
    """Write ``content`` to ``path`` whole or not at all (``ftutils.cache.write_atomically``),
    so an interrupted study never leaves half a file."""
    from .cache import write_atomically

    text = json.dumps(content, indent=1, ensure_ascii=False) + "\n"
    write_atomically(Path(path), lambda temporary: temporary.write_text(text))


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` of the project, loaded as a module called ``name``."""
    spec = importlib.util.spec_from_file_location(name, PROJECT_DIR / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shown_command(command: str) -> str:
    """``command`` as a notebook prints it: absolute paths (the study's temporary part files)
    shortened to their file names, so a page shows no one machine's folders."""
    return re.sub(r"(?<!\S)/\S*/([^/\s]+)", r"\1", command)


def summary(made: dict, source: str) -> str:
    """What a notebook prints about a study's results: the file (or "this notebook") they
    come from and the record ``made`` of how they were made."""
    machine = made["machine"]
    return "\n".join(
        [
            f"results:  {source}",
            f"command:  {shown_command(made['command'])}",
            f"ran:      {made['started']} to {made.get('finished', '(not finished)')} UTC",
            f"machine:  {machine['platform']}, {machine['cpus']} CPUs, {machine['note']}",
            "versions: " + ", ".join(f"{k} {v}" for k, v in made["versions"].items()),
            "setup:    " + ", ".join(f"{k} {v}" for k, v in made["configuration"].items()),
            f"weights:  {made['weights']}",
        ]
    )


class ResultsFile:
    """A study's results file, written after every run so an interrupted study keeps what it
    finished. A file made before by the same study (:data:`RESUMED_WITH`: the same
    parameters, weights, library versions and configuration) is resumed: its runs are kept,
    and :meth:`has` tells which need not run again. A file made otherwise is refused with a
    ``ftutils.errors.ResumeError`` that names what differs, rather than mixing its runs with
    this study's. ``key`` names the fields of a run that identify it (e.g. ``("seed",)``).
    """

    def __init__(self, path: Path, made: dict, key: tuple[str, ...] = ("seed",)):
        self.path, self.key = Path(path), key
        self.content = {"provenance": made, "runs": []}
        if self.path.is_file():
            from .cache import changes

            previous = _read_results(self.path)
            as_stored = json.loads(json.dumps(made))  # tuples read back as lists
            differences = changes(
                {k: previous["provenance"].get(k) for k in RESUMED_WITH},
                {k: as_stored[k] for k in RESUMED_WITH},
            )
            if differences:
                raise ResumeError(
                    f"{self.path} holds the runs of another study, so this one cannot resume "
                    "it; what differs (in the file -> now):\n  " + "\n  ".join(differences)
                    + "\nWrite this study to another file, or delete that one to start afresh."
                )  # fmt: skip
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


#: What a study's results depend on, in :func:`record`: a results file is resumed only when
#: they are all the same (not the machine, command line, commit or dates).
RESUMED_WITH = ("parameters", "weights", "versions", "configuration")


def _read_results(path: Path) -> dict:
    try:
        content = json.loads(path.read_text())
        if not isinstance(content["runs"], list) or "started" not in content["provenance"]:
            raise ValueError("no list of runs, or no start in its provenance")
    except (ValueError, KeyError, TypeError) as exc:
        raise ResumeError(
            f"{path} is not a whole results file ({type(exc).__name__}: {exc}): delete it to "
            "start the study afresh, or write it to another file"
        ) from None
    return content
