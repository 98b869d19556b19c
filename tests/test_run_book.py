"""scripts/run_book.py: parameters injected after the `parameters` cell, one line a notebook."""

import subprocess
import sys

import nbformat
import pytest

from tests.script_loader import SCRIPTS, load_script


def _notebook(path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    defaults = 'SIZE = 96\nDATASET = "fashion_mnist"'
    nb.cells = [
        nbformat.v4.new_code_cell(defaults, metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell('print(f"{DATASET} at {SIZE} px")'),
    ]
    nbformat.write(nb, path)
    return path


def test_values_are_python_literals_else_text():
    run_book = load_script("run_book")
    assert run_book.parameter_value("160") == 160
    assert run_book.parameter_value("[5, 20]") == [5, 20]
    assert run_book.parameter_value("data/own photos") == "data/own photos"


def test_injected_cell_follows_the_parameters_cell_and_unknown_names_are_refused(tmp_path):
    run_book = load_script("run_book")
    nb = nbformat.read(_notebook(tmp_path / "toy.ipynb"), as_version=4)
    run_book.inject_parameters(nb, {"SIZE": 32}, "toy.ipynb")
    assert nb.cells[1].metadata["tags"] == ["injected-parameters"]
    assert "SIZE = 32" in nb.cells[1].source
    with pytest.raises(SystemExit, match="toy.ipynb has no parameter SIZ; its parameters: "):
        run_book.inject_parameters(nb, {"SIZ": 32}, "toy.ipynb")


def test_a_notebook_runs_with_the_injected_values_and_inplace_is_refused(tmp_path):
    path = _notebook(tmp_path / "toy.ipynb")
    command = [sys.executable, str(SCRIPTS / "run_book.py"), "--out", str(tmp_path / "out")]
    done = subprocess.run(
        [*command, "-p", "DATASET", "/data/my photos", "-p", "SIZE", "32", str(path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    # not a terminal: the notebook's line and the summary, no status line
    line, summary = done.stdout.splitlines()
    assert line.startswith("toy.ipynb") and line.endswith(" s  ok"), line
    assert summary.startswith("1 notebooks in ") and ", 0 failed" in summary
    executed = nbformat.read(tmp_path / "out" / "toy.ipynb", as_version=4)
    assert executed.cells[2].outputs[0]["text"] == "/data/my photos at 32 px\n"
    refused = subprocess.run(
        [*command, "--inplace", "-p", "SIZE", "32", str(path)], capture_output=True, text=True
    )
    assert refused.returncode == 2 and "no --inplace" in refused.stderr


def test_progress_counts_the_code_cells_done_and_is_cleared_at_the_end(tmp_path):
    run_book = load_script("run_book")
    seen = []

    class Recording(dict):
        def __setitem__(self, name, value):
            seen.append((name, value))
            super().__setitem__(name, value)

    progress = Recording()
    ok, _ = run_book.execute(_notebook(tmp_path / "toy.ipynb"), tmp_path / "out",
                             tmp_path / "logs", 120, None, progress)  # fmt: skip
    assert ok and seen == [("toy.ipynb", (0, 2)), ("toy.ipynb", (1, 2)), ("toy.ipynb", (2, 2))]
    assert progress == {}  # a finished notebook leaves the status line
    line = run_book.progress_line({"a.ipynb": (3, 10), "b.ipynb": (0, 4)}, 12.4)
    assert line == "[   12 s] running a.ipynb cell 3/10, b.ipynb cell 0/4"


def test_a_prefixed_parameter_is_set_only_in_the_notebooks_it_names(tmp_path):
    run_book = load_script("run_book")
    given = {"SIZE": 32, "04_5_:SIZE": 64, "04_5_:SHOTS": [1, 5], "01_:DATASET": "x"}
    assert run_book.parameters_for(given, "04_5_small.ipynb") == {"SIZE": 64, "SHOTS": [1, 5]}
    assert run_book.parameters_for(given, "04_4_workflow.ipynb") == {"SIZE": 32}
    assert run_book.parameters_for({}, "01_intro.ipynb") == {}
    path = _notebook(tmp_path / "toy.ipynb")
    command = [sys.executable, str(SCRIPTS / "run_book.py"), "--out", str(tmp_path / "out")]
    refused = subprocess.run(
        [*command, "-p", "tyo:SIZE", "32", str(path)], capture_output=True, text=True
    )
    assert refused.returncode == 2 and "starts with tyo" in refused.stderr
