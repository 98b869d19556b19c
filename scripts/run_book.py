"""Execute notebooks top to bottom in a fresh kernel, one line per notebook.

    python scripts/run_book.py notebooks/*.ipynb            # executed copies + HTML in build/
    python scripts/run_book.py --jobs 2 notebooks/*.ipynb   # two notebooks at a time
    python scripts/run_book.py --inplace notebooks/01_*.ipynb  # refresh committed outputs
    python scripts/run_book.py -p DATASET '"path/to/photos"' -p IMAGE_SIZE 160 notebooks/01_*.ipynb
    python scripts/run_book.py -p IMAGE_SIZE 32 -p 04_5_:SHOTS '[1, 5]' notebooks/0[34]_*.ipynb

Without --inplace the committed notebooks are left untouched. ``-p NAME VALUE`` overrides a
parameter (VALUE is read as a Python literal, else taken as a string): as papermill does, a
cell tagged ``injected-parameters`` with the assignments goes right after the cell tagged
``parameters``, so the notebook runs with the defaults first replaced. Committed notebooks
carry the default run only, so ``-p`` cannot be combined with ``--inplace``. ``-p PREFIX:NAME
VALUE`` sets NAME only in the notebooks whose file name starts with PREFIX, so one command can
give each notebook its own values. Exits non-zero when any
notebook fails, naming the failing cell. Each notebook's line ends with how many of its
verdicts were confirmed; with FTUTILS_STRICT_VERDICTS=1 a verdict that does not hold fails
its notebook, otherwise it is printed as NOT CONFIRMED and the run goes on. In a terminal a
status line shows, while they run, how many code cells of each running notebook are done.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import shutil
import sys
import time
from collections.abc import Mapping, MutableMapping
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import Manager
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
from nbconvert import HTMLExporter


def verdict_counts(nb: nbformat.NotebookNode) -> tuple[int, int]:
    """(confirmed, not confirmed) verdict lines printed by the notebook's cells."""
    lines = [
        line
        for cell in nb.cells
        for output in cell.get("outputs", [])
        if output.get("name") == "stdout"
        for line in output.get("text", "").splitlines()
    ]
    return (
        sum(line.startswith("CONFIRMED:") for line in lines),
        sum(line.startswith("NOT CONFIRMED") for line in lines),
    )


def parameter_value(text: str):
    """A ``-p`` value: a Python literal (``160``, ``[5, 20]``, ``'x'``), else the text itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parameters_for(parameters: dict, notebook: str) -> dict:
    """The ``-p`` values for the notebook file ``notebook``: every unqualified ``NAME``, and
    ``PREFIX:NAME`` when ``notebook`` starts with PREFIX (these win)."""
    chosen = {key: value for key, value in parameters.items() if ":" not in key}
    for key, value in parameters.items():
        prefix, _, name = key.rpartition(":")
        if prefix and notebook.startswith(prefix):
            chosen[name] = value
    return chosen


def inject_parameters(nb: nbformat.NotebookNode, parameters: dict, name: str) -> None:
    """Put a cell assigning ``parameters`` right after the cell tagged ``parameters``.

    Names the parameters cell does not assign are refused (a typo would otherwise be ignored).
    """
    index = next(
        (i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])), None
    )
    if index is None:
        raise SystemExit(f"{name} has no cell tagged 'parameters': -p cannot set anything in it")
    known = {
        target.id
        for node in ast.parse(nb.cells[index].source).body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    unknown = sorted(set(parameters) - known)
    if unknown:
        raise SystemExit(
            f"{name} has no parameter {', '.join(unknown)}; "
            f"its parameters: {', '.join(sorted(known))}"
        )
    source = "# Injected parameters (run_book.py -p)\n" + "\n".join(
        f"{key} = {value!r}" for key, value in parameters.items()
    )
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(index + 1, cell)


def progress_line(progress: Mapping[str, tuple[int, int]], elapsed: float) -> str:
    """The status line while notebooks run: each running notebook's code cells done."""
    running = ", ".join(f"{name} cell {done}/{total}" for name, (done, total) in progress.items())
    return f"[{elapsed:5.0f} s] running {running}"


def execute(
    path: Path,
    out_dir: Path | None,
    log_dir: Path,
    timeout: int,
    parameters: dict | None = None,
    progress: MutableMapping | None = None,
) -> tuple[bool, str]:
    """Run one notebook with its folder as working directory; save it; return (ok, detail).

    The kernel's own messages (Jupyter's and TensorFlow's logs) go to ``log_dir/NAME.log``.
    ``progress``: where to keep ``NAME -> (code cells done, code cells)`` while it runs.
    """
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:  # a failed run must not show, or count, the committed outputs below it
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    parameters = parameters_for(parameters or {}, path.name)
    if parameters:
        inject_parameters(nb, parameters, path.name)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": path.parent}}
    )
    if progress is not None:
        code_cells = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
        progress[path.name] = (0, len(code_cells))

        def executed(cell_index: int, **_) -> None:
            progress[path.name] = (code_cells.index(cell_index) + 1, len(code_cells))

        client.on_cell_executed = executed
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{path.stem}.log"
    ok, detail = True, "ok"
    try:
        with log_path.open("w") as log:
            client.execute(stdout=log, stderr=log)
    except (CellTimeoutError, DeadKernelError) as exc:
        ok, detail = False, f"{type(exc).__name__}: {exc}; kernel log: {log_path}"
    except CellExecutionError as exc:
        index = next(
            (
                i
                for i, c in enumerate(nb.cells)
                if any(o.get("output_type") == "error" for o in c.get("outputs", []))
            ),
            None,
        )
        ok, detail = False, f"cell {index}: {exc.ename}: {exc.evalue}; kernel log: {log_path}"
    target = path if out_dir is None else out_dir / path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, target)
    if out_dir is not None:
        html, _ = HTMLExporter().from_notebook_node(nb)
        target.with_suffix(".html").write_text(html, encoding="utf-8")
    confirmed, refuted = verdict_counts(nb)
    if confirmed or refuted:
        detail += f", {confirmed}/{confirmed + refuted} verdicts confirmed"
    if progress is not None:
        progress.pop(path.name, None)
    return ok, detail


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--inplace", action="store_true", help="overwrite the notebooks")
    parser.add_argument("--out", type=Path, default=Path("build"), help="output folder")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    parser.add_argument("--jobs", type=int, default=1, help="notebooks run at the same time")
    parser.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="override a parameter of the notebooks' 'parameters' cell (repeatable)",
    )
    args = parser.parse_args()
    parameters = {name: parameter_value(value) for name, value in args.parameter}
    if parameters and args.inplace:
        parser.error("-p runs a variant: committed notebooks keep their default run (no --inplace)")
    prefixes = {name.rpartition(":")[0] for name in parameters} - {""}
    unmatched = sorted(p for p in prefixes if not any(n.name.startswith(p) for n in args.notebooks))
    if unmatched:
        parser.error(f"no notebook's file name starts with {', '.join(unmatched)} (-p PREFIX:NAME)")
    out_dir = None if args.inplace else args.out
    log_dir = args.out / "logs"
    start = time.perf_counter()
    terminal = sys.stdout.isatty()  # a status line only where it can be rewritten in place
    results = []
    with contextlib.ExitStack() as stack:
        progress = stack.enter_context(Manager()).dict() if terminal else None
        pool = stack.enter_context(ProcessPoolExecutor(max_workers=max(1, args.jobs)))
        running = {
            pool.submit(timed_execute, p, out_dir, log_dir, args.timeout, parameters, progress)
            for p in args.notebooks
        }
        width = shutil.get_terminal_size().columns - 1
        while running:
            finished, running = wait(running, timeout=1, return_when=FIRST_COMPLETED)
            if terminal:
                print("\r\033[K", end="")  # clear the status line
            for run in finished:  # each notebook's line, in the order they finish
                ok, line = run.result()
                print(line, flush=True)
                results.append((ok, line))
            if terminal and running:
                line = progress_line(dict(progress), time.perf_counter() - start)
                print(line[:width], end="", flush=True)
    failures = sum(not ok for ok, _ in results)
    print(
        f"{len(results)} notebooks in {time.perf_counter() - start:.0f} s, {failures} failed "
        f"(kernel logs in {log_dir})"
    )
    return 1 if failures else 0


def timed_execute(
    path: Path,
    out_dir: Path | None,
    log_dir: Path,
    timeout: int,
    parameters: dict,
    progress: MutableMapping | None,
) -> tuple[bool, str]:
    """:func:`execute`; whether it succeeded and the notebook's line: name, seconds, status."""
    start = time.perf_counter()
    ok, detail = execute(path, out_dir, log_dir, timeout, parameters, progress)
    status = detail if ok else f"FAILED ({detail})"
    return ok, f"{path.name:<40} {time.perf_counter() - start:7.1f} s  {status}"


if __name__ == "__main__":
    sys.exit(main())
