"""The image-folder loader and its errors (a reader's own data, §2.1)."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from ftutils import data
from ftutils.errors import DataError
from tests.script_loader import load_script


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


def _photo(width: int = 24, height: int = 16) -> Image.Image:
    """A landscape picture whose top-left corner is red and the rest blue: which way up it
    is shows in its corners."""
    pixels = np.zeros((height, width, 3), "uint8")
    pixels[..., 2] = 255
    pixels[: height // 2, : width // 2] = (255, 0, 0)
    return Image.fromarray(pixels)


def _held_turned(path):
    """A JPEG as a phone stores a portrait photo: landscape pixels, EXIF orientation 6."""
    exif = Image.Exif()
    exif[0x0112] = 6
    _photo().save(path, exif=exif, quality=95)
    return path


def _corrupt_inside(path):
    """A JPEG that starts and ends as a JPEG should, with a second start-of-image marker in
    the middle of its compressed data: no decoder gets through it."""
    noise = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype="uint8")
    load_script("make_image_folder").corrupt_in_the_middle(Image.fromarray(noise), path)
    return path


def test_an_exif_rotated_photo_is_read_upright_in_memory_and_streamed(tmp_path):
    photo = _held_turned(tmp_path / "portrait.jpg")
    upright = np.asarray(ImageOps.exif_transpose(Image.open(photo)))
    assert upright.shape == (24, 16, 3)  # the check below is about something
    read = data.read_image(photo, 16)
    assert read[0, -1, 0] > 200 and read[-1, 0, 2] > 200  # red now top right, blue bottom left
    files = data.ImageFiles([str(photo)], [0], ("a",))
    streamed, _ = next(iter(data.make_dataset(files, 16)))
    np.testing.assert_array_equal(streamed[0].numpy().astype("uint8"), read)
    resized = np.asarray(Image.fromarray(upright).resize((16, 16), Image.LANCZOS), "int16")
    assert np.abs(read.astype("int16") - resized).mean() < 12


def test_every_exif_orientation_matches_pillows_exif_transpose(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 255, (6, 10, 3), dtype="uint8")
    for orientation in range(10):  # 0 and 9 are no orientation: the image as stored
        path = tmp_path / f"{orientation}.png"
        exif = Image.Exif()
        exif[0x0112] = orientation
        Image.fromarray(pixels).save(path, exif=exif)
        expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
        turned = data._orient(data._decoded(path), data._orientation(path)).numpy()
        np.testing.assert_array_equal(turned, expected, err_msg=f"orientation {orientation}")


def test_webp_is_read_by_the_folder_loaders_and_counted(tmp_path):
    _write_images(tmp_path / "cats", 2, (255, 0, 0))
    _write_images(tmp_path / "dogs", 2, (0, 0, 255))
    Image.new("RGB", (20, 20), (0, 0, 255)).save(tmp_path / "dogs" / "photo.webp")
    assert data.count_image_files(tmp_path) == 5
    assert data.load_image_folder(tmp_path, 16).class_counts().tolist() == [2, 3]
    scanned = data.scan_image_folder(tmp_path)
    assert any(f.endswith("photo.webp") for f in scanned.files)
    images, _ = next(iter(data.make_dataset(scanned, 16, batch_size=8)))  # streamed, in tf.data
    assert images.shape == (5, 16, 16, 3)


def test_a_jpeg_corrupt_in_the_middle_is_skipped_by_the_scan_with_a_warning(tmp_path):
    _write_images(tmp_path / "cats", 2, (255, 0, 0))
    _write_images(tmp_path / "dogs", 2, (0, 0, 255))
    broken = _corrupt_inside(tmp_path / "dogs" / "broken.jpg")
    cut = tmp_path / "dogs" / "cut.jpg"
    _photo(64, 48).save(cut, quality=95)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])  # a download cut short
    assert broken.read_bytes()[:3] == b"\xff\xd8\xff" and broken.read_bytes()[-2:] == b"\xff\xd9"
    with pytest.warns(UserWarning) as caught:
        scanned = data.scan_image_folder(tmp_path)
    skipped = " ".join(str(w.message) for w in caught)
    assert "broken.jpg" in skipped and "cut.jpg" in skipped
    assert scanned.class_counts().tolist() == [2, 2]
    for _ in data.make_dataset(scanned, 16):  # a whole epoch reads every file kept
        pass


def test_the_awkward_generated_folder_holds_what_phone_folders_do(tmp_path):
    """``scripts/make_image_folder.py --awkward``: the photo stored sideways is read upright,
    the WebP is taken, the two corrupt files are skipped by name."""
    script = load_script("make_image_folder")
    root = script.make_folder(tmp_path, ["a", "b"], per_class=2, size=24, awkward=True)
    with pytest.warns(UserWarning) as caught:
        scanned = data.scan_image_folder(root)
    skipped = sorted(Path(str(w.message).split()[1].rstrip(":")).name for w in caught)
    assert skipped == ["corrupt_inside.jpg", "not_an_image.jpg"]
    kept = sorted(Path(f).name for f in scanned.files)
    assert {"phone_portrait.jpg", "photo.webp", "greyscale.png", "with_alpha.png"} <= set(kept)
    portrait = root / "a" / "phone_portrait.jpg"
    assert Image.open(portrait).size == (24, 24)  # square: compare the pixels instead
    stored = np.asarray(Image.open(portrait).convert("RGB"), "int16")
    read = data.read_image(portrait, 24).astype("int16")
    upright = np.asarray(ImageOps.exif_transpose(Image.open(portrait)).convert("RGB"), "int16")
    assert np.abs(read - upright).mean() < 3 < np.abs(read - stored).mean()
