"""Committed notebooks carry results, not one machine's environment noise."""

import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))

#: What must never reach a committed output: TensorFlow's C++ start-up notices, download
#: progress, Python warnings as printed by the warnings module (``file.py:N: SomeWarning``;
#: a notebook may still print a warning it caught on purpose), and absolute paths of the
#: machine that ran it.
NOISE = re.compile(
    r"absl::InitializeLog|oneDNN custom operations|cudart_stub|Downloading data from"
    r"|\.py:\d+: \w+Warning|(?<![\w.<~])/(?:work|root|home|tmp|Users|usr|opt)/"
)


def output_texts(path: Path):
    """(cell index, text) of every text output of a notebook."""
    for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
        for output in cell.get("outputs", []):
            text = output.get("text", "") + output.get("data", {}).get("text/plain", "")
            if text:
                yield index, text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_outputs_carry_no_environment_noise(path):
    found = [
        f"cell {index}: {match.group(0)!r}"
        for index, text in output_texts(path)
        for match in NOISE.finditer(text)
    ]
    assert not found, (
        f"{path.name} has environment noise in its outputs: {found[:5]}. Re-run it with "
        "scripts/run_book.py --inplace after fixing the source of the noise."
    )
