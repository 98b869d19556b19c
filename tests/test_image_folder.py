"""The image-folder loader and its errors (a reader's own data, §2.1)."""

import numpy as np
import pytest
from PIL import Image

from ftutils import data
from ftutils.errors import DataError


def _write_images(folder, n, color):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (40 + i, 30), color).save(folder / f"img{i}.png")


def test_loads_classes_resized(tmp_path):
    _write_images(tmp_path / "cats", 3, (255, 0, 0))
    _write_images(tmp_path / "dogs", 2, (0, 0, 255))
    loaded = data.load_image_folder(tmp_path, image_size=16)
    assert loaded.class_names == ("cats", "dogs")
    assert loaded.images.shape == (5, 16, 16, 3)
    assert loaded.class_counts().tolist() == [3, 2]
    assert loaded.images[0, 0, 0].tolist() == [255, 0, 0]


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        data.load_image_folder(tmp_path / "nowhere", 16)


def test_fewer_than_two_classes(tmp_path):
    _write_images(tmp_path / "only", 2, (0, 0, 0))
    with pytest.raises(DataError, match="at least two"):
        data.load_image_folder(tmp_path, 16)


def test_empty_class_folder_is_named(tmp_path):
    _write_images(tmp_path / "cats", 2, (0, 0, 0))
    (tmp_path / "dogs").mkdir()
    with pytest.raises(DataError, match=r"dogs has no image files"):
        data.load_image_folder(tmp_path, 16)


def test_corrupt_image_is_skipped_with_a_warning(tmp_path):
    _write_images(tmp_path / "cats", 2, (0, 0, 0))
    _write_images(tmp_path / "dogs", 2, (9, 9, 9))
    (tmp_path / "dogs" / "broken.jpg").write_bytes(b"not a jpeg at all")
    with pytest.warns(UserWarning, match="broken.jpg"):
        loaded = data.load_image_folder(tmp_path, 16)
    assert loaded.class_counts().tolist() == [2, 2]
    assert np.all(loaded.images[loaded.labels == 1] == 9)


def test_unknown_dataset_name():
    with pytest.raises(DataError, match="unknown dataset"):
        data.load_dataset("imagenet-21k", 96)
