"""Bounded memory (§2.1 "your own dataset" at real sizes): resizing after shuffling, and
folders streamed from disk (``data.ImageFiles``) batch for batch like the in-memory path.

The folder is generated: three classes at sizes 40-58 px, JPEG and PNG, with a greyscale
and an RGBA image, a file that only pretends to be a JPEG and a truncated PNG.
"""

import os
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import keras
import matplotlib
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from ftutils import data, frozen, models, recipe, run_report, training
from ftutils.data import _to_rgb
from ftutils.errors import DataError

matplotlib.use("agg")

ROOT = Path(__file__).resolve().parent.parent
SIZE = 32
CLASSES = {"cat": (200, 40, 40), "dog": (40, 170, 60), "owl": (50, 70, 210)}
PER_CLASS = 10


def _picture(c: int, i: int, colour: tuple) -> Image.Image:
    rng = np.random.default_rng(100 * c + i)
    size = 40 + 2 * i
    y, x = np.mgrid[:size, :size]
    stripes = ((y, x, x + y)[c] // 5) % 2
    noise = rng.normal(0, 8, (size, size, 3))
    pixels = np.asarray(colour) * (0.6 + 0.4 * stripes[..., None]) + noise
    return Image.fromarray(np.clip(pixels, 0, 255).astype("uint8"))


def _make_folder(root: Path) -> Path:
    for c, (name, colour) in enumerate(CLASSES.items()):
        (root / name).mkdir(parents=True)
        for i in range(PER_CLASS):
            _picture(c, i, colour).save(root / name / f"{i:02d}.{'png' if i % 2 else 'jpg'}")
    (root / "cat" / "fake.jpg").write_bytes(b"this file only pretends to be a JPEG")
    whole = (root / "dog" / "01.png").read_bytes()
    (root / "dog" / "truncated.png").write_bytes(whole[: len(whole) // 2])
    _picture(1, 50, CLASSES["dog"]).convert("L").save(root / "dog" / "grey.png")
    _picture(2, 50, CLASSES["owl"]).convert("RGBA").save(root / "owl" / "rgba.png")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return _make_folder(tmp_path_factory.mktemp("streaming") / "images")


def _quietly(function, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(*args)


@pytest.fixture(scope="module")
def files(folder) -> data.ImageFiles:
    return _quietly(data.scan_image_folder, folder)


def _batches(ds) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(x.numpy(), y.numpy()) for x, y in ds]


def _assert_same_batches(a, b) -> None:
    assert len(a) == len(b)
    for (x1, y1), (x2, y2) in zip(a, b, strict=True):
        assert x1.dtype == x2.dtype == np.float32
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)


def _cached_pipeline(d, image_size, batch_size=32, shuffle=False, seed=0, multiple_of=1):
    """``data.make_dataset``'s body before this change: convert -> resize -> cache -> shuffle."""
    ds = tf.data.Dataset.from_tensor_slices((d.images, d.labels))
    ds = ds.map(lambda x, y: (_to_rgb(x, image_size), y), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(len(d), seed=seed, reshuffle_each_iteration=True)
    if len(d) % multiple_of:
        ds = ds.take(len(d) - len(d) % multiple_of)
    ds = ds.batch(batch_size).map(lambda x, y: (tf.cast(x, tf.float32), y))
    return ds.prefetch(tf.data.AUTOTUNE)


@pytest.mark.parametrize("options", [{"shuffle": True, "seed": 3, "multiple_of": 3}, {}])
def test_imagedata_batches_are_bit_identical_to_the_cached_pipeline(options):
    train, _ = data.load_fashion_mnist()
    subset = data.per_class(train, 12, seed=1)  # 120 grey 28x28 images
    keras.utils.set_random_seed(0)
    before = _cached_pipeline(subset, 96, 16, **options)
    keras.utils.set_random_seed(0)
    after = data.make_dataset(subset, 96, 16, **options)
    for _ in range(2):  # the second epoch reshuffles: in the same order in both
        _assert_same_batches(_batches(before), _batches(after))


def test_streamed_batches_equal_the_in_memory_ones(folder, files):
    loaded, read = _quietly(data.load_image_folder_files, folder, SIZE)
    assert [str(f) for f in read] == list(files.files)
    np.testing.assert_array_equal(loaded.labels, files.labels)
    assert loaded.class_names == files.class_names == tuple(CLASSES)
    for options in ({"shuffle": True, "seed": 5}, {}):
        in_memory = data.make_dataset(loaded, SIZE, 8, **options)
        streamed = data.make_dataset(files, SIZE, 8, **options)
        for _ in range(2):
            _assert_same_batches(_batches(in_memory), _batches(streamed))
    np.testing.assert_array_equal(files.load(SIZE).images, loaded.images)


def test_corrupt_and_truncated_files_are_skipped_with_a_warning_naming_each(folder):
    with pytest.warns(UserWarning) as caught:
        scanned = data.scan_image_folder(folder)
    messages = [str(w.message) for w in caught]
    for bad in ("cat/fake.jpg", "dog/truncated.png"):
        assert any(str(folder / bad) in m and m.startswith("skipping ") for m in messages)
        assert str(folder / bad) not in scanned.files
    assert str(folder / "dog" / "grey.png") in scanned.files
    assert str(folder / "owl" / "rgba.png") in scanned.files
    assert scanned.class_counts().tolist() == [PER_CLASS, PER_CLASS + 1, PER_CLASS + 1]
    assert data.count_image_files(folder) == 3 * PER_CLASS + 4  # listed, not opened


def test_a_symlink_loop_is_skipped_not_followed_forever(folder, tmp_path):
    looped = _make_folder(tmp_path / "looped")
    (looped / "cat" / "up").symlink_to(looped, target_is_directory=True)
    (looped / "dog" / "self").symlink_to(looped / "dog", target_is_directory=True)
    (looped / "owl" / "deep").mkdir()
    (looped / "owl" / "deep" / "back").symlink_to(looped / "owl", target_is_directory=True)
    found: dict = {}

    def scan():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            found["files"] = data.scan_image_folder(looped)
            found["loaded"] = data.load_image_folder(looped, SIZE)
        found["warnings"] = [str(w.message) for w in caught]

    worker = threading.Thread(target=scan, daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "scanning a folder with a symlink loop did not finish"
    counts = [PER_CLASS, PER_CLASS + 1, PER_CLASS + 1]  # nothing counted twice
    assert found["files"].class_counts().tolist() == counts
    assert found["loaded"].class_counts().tolist() == counts
    for link in ("cat/up", "dog/self", "owl/deep/back"):
        assert any(str(looped / link) in m and "symlink loop" in m for m in found["warnings"])


def test_scanning_gives_the_folder_loaders_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        data.scan_image_folder(tmp_path / "nowhere")
    _make_folder(tmp_path / "one")
    (tmp_path / "one" / "cat" / "fake.jpg").unlink()
    for name in ("dog", "owl"):
        for file in (tmp_path / "one" / name).iterdir():
            file.unlink()
        (tmp_path / "one" / name).rmdir()
    with pytest.raises(DataError, match="1 class folder"):
        data.scan_image_folder(tmp_path / "one")
    (tmp_path / "one" / "empty").mkdir()
    (tmp_path / "one" / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match="empty has no image files"):
        data.scan_image_folder(tmp_path / "one")


def test_splits_and_subsets_work_on_files(files):
    few = data.per_class(files, 4, seed=0)
    assert isinstance(few, data.ImageFiles) and few.class_counts().tolist() == [4, 4, 4]
    rest, held = data.split(files, 0.3, seed=0)
    assert len(rest) + len(held) == len(files) and isinstance(held, data.ImageFiles)
    assert not set(rest.files) & set(held.files)
    for part in (few, rest, held):  # every file keeps its own class's label
        names = [Path(f).parent.name for f in part.files]
        assert names == [part.class_names[label] for label in part.labels]
    train, val, test = data.three_way_split(files, 0.2, 0.2, seed=0)
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(len(files)))
    two = data.select_classes(files, [2, 0])
    assert two.class_names == ("owl", "cat") and set(two.labels.tolist()) == {0, 1}
    assert data.imbalance(files) is None


def test_large_folders_are_streamed_above_the_threshold(folder, monkeypatch):
    monkeypatch.setenv("FTUTILS_STREAM_THRESHOLD", "10")
    streamed = _quietly(data.open_image_folder, folder, SIZE)
    train, test = _quietly(data.load_dataset, str(folder), SIZE)
    assert isinstance(streamed, data.ImageFiles) and isinstance(train, data.ImageFiles)
    monkeypatch.delenv("FTUTILS_STREAM_THRESHOLD")
    assert data.stream_threshold() == data.STREAM_THRESHOLD
    assert isinstance(_quietly(data.open_image_folder, folder, SIZE), data.ImageData)


def test_activations_of_files_are_cached_by_path_size_and_time(folder, tmp_path, monkeypatch):
    monkeypatch.setattr(frozen, "CACHE_DIR", tmp_path)
    scanned = _quietly(data.scan_image_folder, _make_folder(tmp_path / "copy")).take(range(9))
    model = models.build_classifier("mobilenet_v2", 3, SIZE)
    first = frozen.extract_features(model, scanned)
    assert first.shape == (9, 1280) and len(list(tmp_path.glob("activations/*.npy"))) == 1
    np.testing.assert_array_equal(frozen.extract_features(model, scanned), first)  # a hit
    assert len(list(tmp_path.glob("activations/*.npy"))) == 1
    in_memory = frozen.extract_features(model, scanned.load(SIZE), use_disk_cache=False)
    np.testing.assert_allclose(first, in_memory, rtol=1e-5, atol=1e-5)
    touched = scanned.files[0]
    os.utime(touched, ns=(os.stat(touched).st_atime_ns, os.stat(touched).st_mtime_ns + 10**9))
    frozen.extract_features(model, scanned)  # a miss: the file may have changed
    assert len(list(tmp_path.glob("activations/*.npy"))) == 2


def test_training_and_scoring_on_files(files, tmp_path, monkeypatch):
    monkeypatch.setattr(frozen, "CACHE_DIR", tmp_path)
    train, val = data.split(files, 0.3, seed=0)
    model = models.build_classifier("mobilenet_v2", 3, SIZE)
    training.compile_classifier(model, "adam", 1e-3)
    record = training.fit_classifier(model, train, val, epochs=1, batch_size=8, verbose=0)
    assert [row["phase"] for row in record.rows] == ["train"]
    assert 0 <= training.accuracy(model, val) <= 1
    assert training.predict_labels(model, val).shape == (len(val),)
    record = recipe.fine_tune(model, train, val, head_epochs=2, finetune_epochs=1,
                              head_lr=0.01, unfreeze_from="block_16_expand")  # fmt: skip
    assert [row["phase"] for row in record.rows] == ["head", "head", "fine-tune"]
    probabilities = np.full((len(val), 3), 1 / 3)
    run_report._plot_misclassified(val, np.arange(3), probabilities, SIZE)  # read from files
    shown = [ax for ax in matplotlib.pyplot.gcf().axes if ax.images]
    assert len(shown) == 3 and shown[0].images[0].get_array().shape == (SIZE, SIZE, 3)
    matplotlib.pyplot.close("all")


def test_the_command_streams_a_large_folder_and_reports_from_files(folder, tmp_path):
    out = tmp_path / "run"
    args = ["finetune", folder, "--out", out, "--image-size", SIZE, "--recipe", "finetune",
            "--head-epochs", 2, "--finetune-epochs", 0, "--val-fraction", 0.2,
            "--test-fraction", 0.3]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "ftutils", *map(str, args)],
        cwd=ROOT,
        env={**os.environ, "FTUTILS_STREAM_THRESHOLD": "10", "PYTHONIOENCODING": "utf-8"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "fake.jpg" in result.stderr and "truncated.png" in result.stderr
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "fake.jpg" in report and "test accuracy" in result.stdout
    assert "read from disk batch by batch" in result.stdout
