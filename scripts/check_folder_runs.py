"""Check the notebooks `make test-folder` ran on generated image folders.

    python scripts/check_folder_runs.py --ran build/folder/large build/folder/small \\
        --too-small build/folder/defaults

``--ran``: folders of notebooks executed on image folders, in the order they ran, with one
cache (FTUTILS_CACHE) shared by the runs and emptied before the first. Every sweep row they
print must have run there: a row marked "(cached)" means a sweep's key misses the data, so
an earlier folder's results (or Fashion-MNIST's) were shown as this folder's. ``--too-small``:
notebooks run at their defaults on a folder too small for them; each must stop with a
DataError naming the parameters to lower. Exits non-zero, naming each notebook that fails.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

#: A sweep's line for one run (ftutils.experiments.run_sweep): "[3/12] shots=5 seed=0 -> ..."
SWEEP_ROW = re.compile(r"^\[\d+/\d+\] .* \((cached|[\d.]+ s)\)$")


def stdout_lines(nb: nbformat.NotebookNode) -> list[str]:
    """Every line the notebook's cells printed."""
    return [
        line
        for cell in nb.cells
        for output in cell.get("outputs", [])
        if output.get("name") == "stdout"
        for line in output.get("text", "").splitlines()
    ]


def cached_rows(nb: nbformat.NotebookNode) -> list[str]:
    """The sweep rows the notebook took from the cache instead of running."""
    return [line for line in stdout_lines(nb) if SWEEP_ROW.match(line) and "(cached)" in line]


def first_error(nb: nbformat.NotebookNode) -> tuple[str, str] | None:
    """(name, message) of the first error a cell raised, or None."""
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return output["ename"], output["evalue"]
    return None


def check_ran(folder: Path) -> list[str]:
    notebooks = sorted(folder.glob("*.ipynb"))
    problems = [] if notebooks else [f"{folder}: no executed notebook"]
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        rows = [line for line in stdout_lines(nb) if SWEEP_ROW.match(line)]
        cached = cached_rows(nb)
        error = first_error(nb)
        if error:
            problems.append(f"{path}: stopped with {error[0]}: {error[1]}")
        if cached:
            problems.append(
                f"{path}: {len(cached)} of {len(rows)} sweep rows come from the cache, not from "
                f"this folder (their key misses the data), e.g. {cached[0]!r}"
            )
        print(f"{path}: {len(rows)} sweep rows, {len(cached)} from the cache")
    return problems


def check_too_small(folder: Path) -> list[str]:
    notebooks = sorted(folder.glob("*.ipynb"))
    problems = [] if notebooks else [f"{folder}: no executed notebook"]
    for path in notebooks:
        error = first_error(nbformat.read(path, as_version=4))
        if error is None or error[0] != "DataError" or "lower " not in error[1]:
            problems.append(
                f"{path}: a folder too small for the defaults must stop with a DataError naming "
                f"the parameters to lower; got {error[0] + ': ' + error[1] if error else 'none'}"
            )
        else:
            print(f"{path}: {error[0]}: {error[1]}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ran", nargs="+", type=Path, default=[], help="folders of notebooks")
    parser.add_argument("--too-small", type=Path, help="notebooks run at their defaults")
    args = parser.parse_args()
    problems = [p for folder in args.ran for p in check_ran(folder)]
    if args.too_small:
        problems += check_too_small(args.too_small)
    for problem in problems:
        print("FAILED:", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
