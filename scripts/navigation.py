"""Previous / contents / next links at the top and bottom of every notebook.

    python scripts/navigation.py          # (re)write the links after adding or renaming one
    python scripts/navigation.py --check  # exit 1 when a notebook's links are out of date

The links live in markdown cells tagged ``navigation``: one right after the title cell and
one at the end. Titles come from each notebook's first heading, up to its " — ".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
TAG = "navigation"


def short_title(path: Path) -> str:
    """``3.4 Dropout：随机关闭神经元`` from ``# 3.4 Dropout：随机关闭神经元 · Dropout: ...``
    (the Chinese title, before the English one)."""
    heading = nbformat.read(path, as_version=4).cells[0].source.splitlines()[0]
    return heading.lstrip("# ").split(" · ")[0].split(" — ")[0].strip()


def links(previous: Path | None, following: Path | None) -> str:
    """One markdown line: ← previous · all chapters · next →."""
    parts = []
    if previous is not None:
        parts.append(f"← [{short_title(previous)}]({previous.name})")
    parts.append("[全部章节 · all chapters](../README.md#chapters)")
    if following is not None:
        parts.append(f"[{short_title(following)}]({following.name}) →")
    return " · ".join(parts)


def with_navigation(nb: nbformat.NotebookNode, line: str) -> nbformat.NotebookNode:
    """``nb`` with its navigation cells replaced by ``line`` after the title and at the end."""
    cells = [c for c in nb.cells if TAG not in c.get("metadata", {}).get("tags", [])]

    def cell() -> nbformat.NotebookNode:
        return nbformat.v4.new_markdown_cell(line, metadata={"tags": [TAG]})

    nb.cells = [cells[0], cell(), *cells[1:], cell()]
    return nb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale links")
    args = parser.parse_args()
    paths = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
    stale = []
    for index, path in enumerate(paths):
        previous = paths[index - 1] if index > 0 else None
        following = paths[index + 1] if index + 1 < len(paths) else None
        nb = nbformat.read(path, as_version=4)
        current = [c.source for c in nb.cells if TAG in c.get("metadata", {}).get("tags", [])]
        line = links(previous, following)
        if current == [line, line] and nb.cells[1].source == line and nb.cells[-1].source == line:
            continue
        stale.append(path.name)
        if not args.check:
            nbformat.write(with_navigation(nb, line), path)
    verb = "stale" if args.check else "updated"
    print(f"{len(stale)} of {len(paths)} notebooks {verb}" + (f": {stale}" if stale else ""))
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
