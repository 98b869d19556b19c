"""A reader's own folder in the notebooks (§2.1): pixels of a streamed subset, errors that name
the parameters to lower when the folder is smaller than the defaults ask for, and the check of
`make test-folder`'s executed notebooks (scripts/check_folder_runs.py)."""

import nbformat
import numpy as np
import pytest
from PIL import Image

from ftutils import data, parameters
from ftutils.errors import DataError
from tests.script_loader import load_script

SIZE = 32


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> data.ImageFiles:
    root = tmp_path_factory.mktemp("own") / "images"
    for c, name in enumerate(["狗", "猫"]):
        (root / name).mkdir(parents=True)
        for i in range(3):
            pixels = np.full((40, 48, 3), 60 * c + 20 * i, "uint8")
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return data.scan_image_folder(root)


def test_in_memory_loads_files_and_keeps_arrays(files):
    loaded = data.in_memory(files.take(np.array([4, 0])), SIZE)
    assert isinstance(loaded, data.ImageData) and loaded.images.shape == (2, SIZE, SIZE, 3)
    assert loaded.labels.tolist() == [1, 0] and loaded.class_names == ("狗", "猫")
    np.testing.assert_array_equal(loaded.images[1], files.read(0, SIZE))
    assert data.in_memory(loaded, 999) is loaded  # already in memory: as it is, not resized


def test_a_too_small_folder_names_the_parameters_to_lower(files):
    with pytest.raises(DataError) as caught:
        with parameters.lower_if_too_small("SHOTS", "VAL_PER_CLASS"):
            data.per_class(files, 5, seed=0)
    message = str(caught.value)
    assert "smallest class has 3" in message and "lower SHOTS, VAL_PER_CLASS" in message
    with parameters.lower_if_too_small("SHOTS"):  # enough images: nothing raised
        assert len(data.per_class(files, 3, seed=0)) == 6
    with pytest.raises(KeyError), parameters.lower_if_too_small("SHOTS"):
        raise KeyError("other errors pass through unchanged")


def _executed(path, printed: str, error: tuple[str, str] | None = None):
    cell = nbformat.v4.new_code_cell("run()")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=printed)]
    if error:
        cell.outputs.append(nbformat.v4.new_output("error", ename=error[0], evalue=error[1]))
    nb = nbformat.v4.new_notebook()
    nb.cells = [cell]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


def test_the_folder_check_fails_on_cached_sweep_rows_and_unnamed_parameters(tmp_path, capsys):
    check = load_script("check_folder_runs")
    ran = "[1/2] shots=1 seed=0 -> test=0.500 (3.1 s)\n[2/2] shots=5 seed=0 -> test=0.9 (0.4 s)\n"
    _executed(tmp_path / "ran" / "04_5.ipynb", ran)
    assert check.check_ran(tmp_path / "ran") == []
    _executed(tmp_path / "cached" / "04_5.ipynb", ran.replace("(0.4 s)", "(cached)"))
    [problem] = check.check_ran(tmp_path / "cached")
    assert "1 of 2 sweep rows come from the cache" in problem
    named = ("DataError", "cannot take 50 images per class. ... lower SHOTS, VAL_PER_CLASS in")
    _executed(tmp_path / "small" / "01.ipynb", "", named)
    assert check.check_too_small(tmp_path / "small") == []
    _executed(tmp_path / "small" / "02.ipynb", "", ("DataError", "cannot take 50 images"))
    _executed(tmp_path / "small" / "03.ipynb", "ran to the end\n")
    assert [p.split(":")[0] for p in check.check_too_small(tmp_path / "small")] == [
        str(tmp_path / "small" / "02.ipynb"),
        str(tmp_path / "small" / "03.ipynb"),
    ]
