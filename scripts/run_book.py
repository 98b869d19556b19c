"""Execute notebooks top to bottom in a fresh kernel, one line per notebook.

    python scripts/run_book.py notebooks/*.ipynb            # executed copies + HTML in build/
    python scripts/run_book.py --inplace notebooks/01_*.ipynb  # refresh committed outputs

Without --inplace the committed notebooks are left untouched. Exits non-zero when any
notebook fails, naming the failing cell.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbconvert import HTMLExporter


def execute(path: Path, out_dir: Path | None, timeout: int) -> tuple[bool, str]:
    """Run one notebook with its folder as working directory; save it; return (ok, detail)."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": path.parent}}
    )
    ok, detail = True, ""
    try:
        client.execute()
    except CellExecutionError as exc:
        index = next(
            (
                i
                for i, c in enumerate(nb.cells)
                if any(o.get("output_type") == "error" for o in c.get("outputs", []))
            ),
            None,
        )
        ok, detail = False, f"cell {index}: {exc.ename}: {exc.evalue}"
    target = path if out_dir is None else out_dir / path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, target)
    if out_dir is not None:
        html, _ = HTMLExporter().from_notebook_node(nb)
        target.with_suffix(".html").write_text(html, encoding="utf-8")
    return ok, detail


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--inplace", action="store_true", help="overwrite the notebooks")
    parser.add_argument("--out", type=Path, default=Path("build"), help="output folder")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = parser.parse_args()
    failures = 0
    for path in args.notebooks:
        start = time.perf_counter()
        ok, detail = execute(path, None if args.inplace else args.out, args.timeout)
        status = "ok" if ok else f"FAILED ({detail})"
        print(f"{path.name:<40} {time.perf_counter() - start:7.1f} s  {status}", flush=True)
        failures += not ok
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
