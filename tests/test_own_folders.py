"""A reader's own folder in the notebooks (§2.1): pixels of a streamed subset, and errors that
name the parameters to lower when the folder is smaller than the defaults ask for."""

import numpy as np
import pytest
from PIL import Image

from ftutils import data, parameters
from ftutils.errors import DataError

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
