"""pytest plugin for `make test`: the longest notebooks start first.

pytest-xdist (``--dist loadfile``) hands whole files to its workers in collection order, so a
long notebook collected last can leave one core idle while the other finishes it. Notebooks
are ordered by how long their committed run took (the execution times Jupyter records in
each code cell's metadata), longest first, then the unit-test files in their usual order;
the cells of a notebook keep their order.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path


def committed_seconds(path: Path) -> float:
    """Seconds the notebook's committed run spent in its code cells (0 for other files)."""
    if path.suffix != ".ipynb":
        return 0.0
    total = 0.0
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        timing = cell.get("metadata", {}).get("execution", {})
        if "iopub.execute_input" in timing and "shell.execute_reply" in timing:
            start, end = (
                datetime.datetime.fromisoformat(timing[key].replace("Z", "+00:00"))
                for key in ("iopub.execute_input", "shell.execute_reply")
            )
            total += (end - start).total_seconds()
    return total


def pytest_collection_modifyitems(items):
    seconds: dict[Path, float] = {}
    for item in items:
        path = Path(item.path)
        if path not in seconds:
            seconds[path] = committed_seconds(path)
    order = {item: index for index, item in enumerate(items)}
    items.sort(key=lambda item: (-seconds[Path(item.path)], order[item]))
