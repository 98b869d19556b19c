"""Datasets for the book (§2.1): Fashion-MNIST by default, any image folder, tf_flowers online.

Images are kept as uint8 arrays in an :class:`ImageData`, at their stored size; a folder too
large for memory is an :class:`ImageFiles` (paths and labels, :func:`scan_image_folder`) that
is read from disk batch by batch. :func:`make_dataset` turns either into a tf.data pipeline
(shuffle -> read/convert -> resize -> batch -> prefetch), so no pipeline holds a dataset at
the model's input size. Random augmentation lives in the model (``ftutils.augment``), never
before a cache: a cached random transform would repeat the same "random" images every epoch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from ftutils import downloads
from ftutils.config import keras_home
from ftutils.errors import DataError

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
#: What ``keras.datasets.fashion_mnist`` keeps in ``$KERAS_HOME/datasets/fashion-mnist/``.
FASHION_MNIST_FILES = tuple(
    f"{part}-{kind}-ubyte.gz"
    for part in ("train", "t10k")
    for kind in ("labels-idx1", "images-idx3")
)
#: The files an image folder's scan takes and ``python -m ftutils predict`` reads: the formats
#: ``tf.io.decode_image`` decodes.
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}
#: The EXIF tag that says how a camera (a phone) was held: 1 is upright, 2-8 mirrored or turned.
ORIENTATION_TAG = 0x0112
#: Why an image file is skipped (or refused).
UNREADABLE = "not a readable image (corrupt or wrong format)"
#: Folders with more image files than this are streamed from disk (:func:`open_image_folder`,
#: :func:`load_dataset`, ``python -m ftutils finetune``) instead of decoded into memory: 2,000
#: photos at 224 px take 300 MB as uint8. ``FTUTILS_STREAM_THRESHOLD`` overrides it.
STREAM_THRESHOLD = 2000
FLOWERS_URL = (
    "https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz"
)


class _Labelled:
    """What ImageData and ImageFiles share: one integer label per image, named classes."""

    labels: np.ndarray
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.n_classes)


@dataclasses.dataclass(frozen=True)
class ImageData(_Labelled):
    """Images (uint8, ``(N, H, W)`` or ``(N, H, W, C)``), integer labels and class names."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]

    def take(self, indices: np.ndarray) -> ImageData:
        return ImageData(self.images[indices], self.labels[indices], self.class_names)

    def __repr__(self) -> str:
        return (
            f"ImageData({len(self)} images of shape {self.images.shape[1:]}, "
            f"{self.n_classes} classes, per class {self.class_counts().tolist()})"
        )


@dataclasses.dataclass(frozen=True)
class ImageFiles(_Labelled):
    """Image files on disk, integer labels and class names: :class:`ImageData` for a folder too
    large for memory (:func:`scan_image_folder`).

    ``len``, ``labels``, ``class_names``, ``n_classes``, ``class_counts()`` and ``take()``
    behave as ImageData's, so ``split``, ``per_class`` and ``three_way_split`` work on it;
    :func:`make_dataset` reads and decodes the files batch by batch, and
    ``ftutils.frozen.activations``, ``ftutils.training.fit_classifier``, ``accuracy`` and
    ``ftutils.recipe.fine_tune`` accept it. There is no ``images`` array: :meth:`read` one
    image, or :meth:`load` a subset into an ImageData.
    """

    files: np.ndarray  # str paths, one per image
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "files", np.asarray(self.files, dtype=str).reshape(-1))
        object.__setattr__(self, "labels", np.asarray(self.labels, dtype="int64"))
        if len(self.files) != len(self.labels):
            raise DataError(f"{len(self.files)} files but {len(self.labels)} labels")

    def take(self, indices: np.ndarray) -> ImageFiles:
        return ImageFiles(self.files[indices], self.labels[indices], self.class_names)

    def read(self, index: int, image_size: int) -> np.ndarray:
        """Image ``index`` as :func:`read_image` reads it."""
        return read_image(self.files[index], image_size)

    def load(self, image_size: int) -> ImageData:
        """All these files decoded into memory (for a small subset: a grid, a check)."""
        images = [self.read(i, image_size) for i in range(len(self))]
        shape = (0, image_size, image_size, 3)
        stacked = np.stack(images) if images else np.zeros(shape, "uint8")
        return ImageData(stacked, self.labels, self.class_names)

    def fingerprint(self) -> dict:
        """What the images' content is keyed by (``ftutils.cache.key``): every file's path,
        size in bytes and modification time (ns), read now. Cheaper than hashing the content
        (one ``stat`` per file); an edited, replaced or touched file changes it."""
        stats = [os.stat(f) for f in self.files]
        return {
            "files": [str(f) for f in self.files],
            "sizes": np.array([st.st_size for st in stats], dtype="int64"),
            "mtimes": np.array([st.st_mtime_ns for st in stats], dtype="int64"),
        }

    def __repr__(self) -> str:
        return (
            f"ImageFiles({len(self)} image files, {self.n_classes} classes, "
            f"per class {self.class_counts().tolist()})"
        )


#: Either kind of labelled images (``isinstance(x, Images)`` works).
Images = ImageData | ImageFiles


def in_memory(data: Images, image_size: int) -> ImageData:
    """``data`` as an :class:`ImageData`: returned as it is when it already is one, else its
    files decoded at ``image_size`` (:meth:`ImageFiles.load`), for code that reads pixels
    (``images``, :func:`image_hashes`, a grid of samples) on a subset of a streamed folder."""
    return data if isinstance(data, ImageData) else data.load(image_size)


def load_fashion_mnist(classes: list[int] | None = None) -> tuple[ImageData, ImageData]:
    """Fashion-MNIST (train 60,000, test 10,000; 28x28 grey) through ``keras.datasets``.

    ``classes`` keeps only those original classes, relabelled 0..k-1 in the given order:
    ``[0, 1, 2, 3, 4]`` is the book's source split, ``[5, 6, 7, 8, 9]`` its target split.
    """
    try:
        with downloads.timeout():
            (x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
    except Exception as exc:  # keras raises a bare Exception when a download fails
        raise DataError(
            f"Fashion-MNIST is not in the Keras cache ({keras_home() / 'datasets'}) and cannot "
            f"be downloaded ({exc}). Online it downloads once (~30 MB); offline, copy a "
            "prepared cache and set KERAS_HOME (README, 'Offline use')."
        ) from None
    for name in FASHION_MNIST_FILES:
        downloads.note_used(keras_home() / "datasets" / "fashion-mnist" / name)
    names = FASHION_MNIST_CLASSES
    train = ImageData(x_train, y_train.astype("int64"), names)
    test = ImageData(x_test, y_test.astype("int64"), names)
    if classes is None:
        return train, test
    return select_classes(train, classes), select_classes(test, classes)


def select_classes(data: Images, classes: list[int]) -> Images:
    """Keep only ``classes`` and relabel them 0..k-1 in the given order."""
    unknown = sorted(set(classes) - set(range(data.n_classes)))
    if unknown:
        raise DataError(f"classes {unknown} do not exist; valid labels are 0..{data.n_classes - 1}")
    relabel = np.full(data.n_classes, -1, dtype="int64")
    relabel[list(classes)] = np.arange(len(classes))
    kept = data.take(np.flatnonzero(np.isin(data.labels, classes)))
    names = tuple(data.class_names[c] for c in classes)
    return dataclasses.replace(kept, labels=relabel[kept.labels], class_names=names)


def per_class(data: Images, k: int, seed: int = 0) -> Images:
    """A stratified, seeded subset with exactly ``k`` images of every class (k-shot)."""
    counts = data.class_counts()
    if k < 1 or counts.min() < k:
        raise DataError(
            f"cannot take {k} images per class: the smallest class has {counts.min()} "
            f"(per class: {counts.tolist()}); use 1 <= k <= {counts.min()}"
        )
    rng = np.random.default_rng(seed)
    chosen = [
        rng.choice(np.flatnonzero(data.labels == c), size=k, replace=False)
        for c in range(data.n_classes)
    ]
    return data.take(rng.permutation(np.concatenate(chosen)))


def holdout_indices(
    labels: np.ndarray, n_classes: int, per_class: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A stratified, seeded split of ``labels`` as index arrays: (rest, ``per_class`` per class).

    For features computed once for a pool of images, where every seed splits the pool anew.
    """
    counts = np.bincount(labels, minlength=n_classes)
    if per_class < 1 or counts.min() <= per_class:
        raise DataError(
            f"cannot hold out {per_class} images per class and keep some: the smallest class "
            f"has {counts.min()}; use 1 <= per_class < {counts.min()}"
        )
    rng = np.random.default_rng(seed)
    held = np.concatenate(
        [
            rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
            for c in range(n_classes)
        ]
    )
    rest = np.setdiff1d(np.arange(len(labels)), held)
    return rng.permutation(rest), rng.permutation(held)


def split(data: Images, fraction: float, seed: int = 0) -> tuple[Images, Images]:
    """Stratified, seeded split: returns (rest, held_out) with ``fraction`` of each class held out.

    Every class keeps at least one image on each side.
    """
    if not 0 < fraction < 1:
        raise DataError(f"split fraction must be between 0 and 1, got {fraction}")
    rng = np.random.default_rng(seed)
    rest, held = [], []
    for c in range(data.n_classes):
        idx = rng.permutation(np.flatnonzero(data.labels == c))
        if len(idx) < 2:
            raise DataError(
                f"class {data.class_names[c]!r} has {len(idx)} image(s); a split needs at least 2"
            )
        n_held = min(max(1, round(fraction * len(idx))), len(idx) - 1)
        held.append(idx[:n_held])
        rest.append(idx[n_held:])
    return data.take(rng.permutation(np.concatenate(rest))), data.take(
        rng.permutation(np.concatenate(held))
    )


def three_way_split(
    data: Images, val_fraction: float, test_fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified, seeded indices into ``data`` for training, validation and test (§2.1).

    Each class gives about ``val_fraction`` and ``test_fraction`` of its images to the
    validation and test sets and at least one to each of the three, so every class needs
    at least 3 images. Validation chooses (early stopping, settings); test only measures.
    """
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DataError(
            f"validation and test fractions must each be between 0 and 1 and leave images for "
            f"training; got {val_fraction} and {test_fraction} (e.g. use 0.15 and 0.15)"
        )
    rng = np.random.default_rng(seed)
    parts: tuple[list, list, list] = ([], [], [])
    for c, name in enumerate(data.class_names):
        idx = rng.permutation(np.flatnonzero(data.labels == c))
        if len(idx) < 3:
            raise DataError(
                f"class {name!r} has {len(idx)} image(s); splitting into training, validation "
                "and test needs at least 3 images per class (one for each) and about "
                f"{int(np.ceil(1 / min(val_fraction, test_fraction)))} for the fractions asked: "
                "add images to it or remove its folder"
            )
        n_test = min(max(1, round(test_fraction * len(idx))), len(idx) - 2)
        n_val = min(max(1, round(val_fraction * len(idx))), len(idx) - 1 - n_test)
        parts[0].append(idx[n_val + n_test :])
        parts[1].append(idx[:n_val])
        parts[2].append(idx[n_val : n_val + n_test])
    train, val, test = (rng.permutation(np.concatenate(part)) for part in parts)
    return train, val, test


def imbalance(data: Images, max_ratio: float = 5.0) -> str | None:
    """A warning naming every class's count when the largest class has more than
    ``max_ratio`` times the images of the smallest; None when the classes are balanced enough.

    With unbalanced classes overall accuracy mostly reflects the large ones (§2.1).
    """
    counts = data.class_counts()
    if counts.max() <= max_ratio * counts.min():
        return None
    ratio = counts.max() / counts.min() if counts.min() else np.inf
    listed = ", ".join(f"{name} {n}" for name, n in zip(data.class_names, counts, strict=True))
    return (
        f"the classes are unbalanced: the largest has {ratio:.1f} times "
        f"the images of the smallest ({listed}); overall accuracy then mostly reflects the "
        "large classes: read the per-class accuracy, or add images to the small classes"
    )


def load_image_folder(path: str | Path, image_size: int) -> ImageData:
    """Load ``path/<class name>/<image>`` files, resized to ``image_size`` square RGB.

    Checks the layout first and says how to fix it: a missing folder, fewer than two class
    folders, a class folder without images. A file that cannot be decoded is skipped with a
    warning naming it (``keras.utils.image_dataset_from_directory`` would stop the whole
    epoch at it instead).
    """
    return load_image_folder_files(path, image_size)[0]


def load_image_folder_files(path: str | Path, image_size: int) -> tuple[ImageData, list[Path]]:
    """:func:`load_image_folder`, and the file each image was read from (in the same order,
    skipped files left out): for a report that names the images it shows."""
    images, labels, read = [], [], []
    class_dirs = _class_folders(Path(path))
    for label, class_dir in enumerate(class_dirs):
        files = _image_files(class_dir)
        decoded = [(f, img) for f in files if (img := _decode(f, image_size)) is not None]
        if not decoded:
            _no_images(class_dir, files)
        read += [f for f, _ in decoded]
        images += [img for _, img in decoded]
        labels += [label] * len(decoded)
    names = tuple(p.name for p in class_dirs)
    return ImageData(np.stack(images), np.array(labels, dtype="int64"), names), read


def scan_image_folder(path: str | Path) -> ImageFiles:
    """``path/<class name>/<image>`` as :class:`ImageFiles`: paths, not decoded images.

    The same checks and errors as :func:`load_image_folder` (a missing folder, fewer than two
    class folders, a class folder without images). Every file is decoded once, whole, and
    skipped with a warning naming it when it cannot be: a file cut short or corrupt in its
    middle, which would otherwise stop training mid-epoch. 3,600 JPEGs of 320 x 240 px
    (24 kB each) took 4.5 to 12 s on a busy 2-core AMD EPYC (1.3 to 3.3 ms each), where
    checking each file's first and last bytes took 0.2 to 0.3 s but let such a file through.
    """
    files, labels = [], []
    class_dirs = _class_folders(Path(path))
    for label, class_dir in enumerate(class_dirs):
        candidates = _image_files(class_dir)
        good = [f for f in candidates if _readable(f)]
        if not good:
            _no_images(class_dir, candidates)
        files += [str(f) for f in good]
        labels += [label] * len(good)
    names = tuple(p.name for p in class_dirs)
    return ImageFiles(np.array(files, dtype=str), np.array(labels, dtype="int64"), names)


def stream_threshold() -> int:
    """:data:`STREAM_THRESHOLD`, or the ``FTUTILS_STREAM_THRESHOLD`` environment variable."""
    value = os.environ.get("FTUTILS_STREAM_THRESHOLD", "")
    try:
        return int(value) if value.strip() else STREAM_THRESHOLD
    except ValueError:
        raise DataError(
            f"FTUTILS_STREAM_THRESHOLD must be a number of images, got {value!r}"
        ) from None


def open_image_folder(
    path: str | Path, image_size: int, threshold: int | None = None
) -> ImageData | ImageFiles:
    """An image folder in memory (:func:`load_image_folder`) when it holds at most
    ``threshold`` image files (default :func:`stream_threshold`), else streamed from disk
    (:func:`scan_image_folder`)."""
    threshold = stream_threshold() if threshold is None else threshold
    if count_image_files(path) > threshold:
        return scan_image_folder(path)
    return load_image_folder(path, image_size)


def count_image_files(path: str | Path) -> int:
    """How many files with an image extension the class folders of ``path`` hold (listed,
    not opened)."""
    return sum(len(_image_files(d)) for d in _class_folders(Path(path)))


def _class_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        raise DataError(
            f"image folder {root} does not exist (or is not a folder); create it with one "
            f"sub-folder per class, e.g. {root}/cats/*.jpg and {root}/dogs/*.jpg"
        )
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(class_dirs) < 2:
        raise DataError(
            f"{root} has {len(class_dirs)} class folder(s); a classifier needs at least two: "
            "put each class's images in its own sub-folder"
        )
    return class_dirs


def _image_files(class_dir: Path) -> list[Path]:
    """Every file with an image extension under ``class_dir``, sorted; symlinked folders are
    followed once, and a link to the class folder or above it (a loop) is skipped with a
    warning rather than entered forever."""
    found = []
    here = os.path.realpath(class_dir)
    seen = {here}
    for top, dirs, names in os.walk(class_dir, followlinks=True):
        kept = []
        for name in dirs:
            real = os.path.realpath(os.path.join(top, name))
            if real == here or here.startswith(real.rstrip(os.sep) + os.sep) or real in seen:
                warnings.warn(
                    f"skipping {os.path.join(top, name)}: a link to a folder already "
                    "listed (a symlink loop)",
                    stacklevel=4,
                )
                continue
            seen.add(real)
            kept.append(name)
        dirs[:] = sorted(kept)
        for name in names:
            file = Path(top) / name
            if file.suffix.lower() in IMAGE_EXTENSIONS and file.is_file():
                found.append(file)
    return sorted(found)


def _no_images(class_dir: Path, files: list[Path]) -> None:
    found = "no image files" if not files else f"{len(files)} files, none decodable"
    raise DataError(
        f"class folder {class_dir} has {found} ({', '.join(sorted(IMAGE_EXTENSIONS))}); "
        "add images to it or remove the folder"
    )


def _readable(file: Path) -> bool:
    """Whether ``file`` decodes, whole; one that does not is skipped with a warning."""
    try:
        _decoded(file)
    except DataError:
        warnings.warn(f"skipping {file}: {UNREADABLE}", stacklevel=3)
        return False
    return True


def read_image(file: str | Path, image_size: int) -> np.ndarray:
    """One image file as an ``image_size`` square RGB uint8 array, decoded and resized as
    :func:`load_image_folder` does (grey becomes RGB; an alpha channel is dropped; a photo
    whose EXIF says it was taken turned is turned upright, as ``PIL.ImageOps.exif_transpose``
    does)."""
    return _resize_decoded(_orient(_decoded(file), _orientation(file)), image_size).numpy()


def _decoded(file: str | Path) -> tf.Tensor:
    """``file`` decoded whole to RGB, as it is stored (DataError if it cannot be)."""
    try:
        image = tf.io.decode_image(Path(file).read_bytes(), channels=3, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError):
        raise DataError(f"{file} is {UNREADABLE}") from None
    return image


def _orientation(file: str | Path | bytes) -> np.int64:
    """The EXIF orientation of an image file (1, upright, when it has none or is unreadable);
    reads the file's header, not its pixels."""
    try:
        with Image.open(os.fsdecode(file)) as image:
            return np.int64(image.getexif().get(ORIENTATION_TAG, 1))
    except (OSError, ValueError, SyntaxError):  # what Pillow raises on a header it cannot parse
        return np.int64(1)


def _orient(image: tf.Tensor, orientation) -> tf.Tensor:
    """``image`` turned upright for its EXIF ``orientation``, as ``PIL.ImageOps.exif_transpose``
    turns it (a value outside 1-8 leaves it as it is); eager or in tf.data."""
    transposed = lambda: tf.transpose(image, [1, 0, 2])  # noqa: E731
    upright = (
        lambda: image,  # 1
        lambda: tf.image.flip_left_right(image),  # 2: mirrored
        lambda: tf.image.rot90(image, 2),  # 3: upside down
        lambda: tf.image.flip_up_down(image),  # 4
        transposed,  # 5
        lambda: tf.image.rot90(image, 3),  # 6: held turned right (a phone's portrait)
        lambda: tf.image.rot90(transposed(), 2),  # 7
        lambda: tf.image.rot90(image, 1),  # 8: held turned left
    )
    orientation = tf.cast(orientation, tf.int32)
    index = tf.where((orientation >= 1) & (orientation <= 8), orientation - 1, 0)
    return tf.switch_case(index, upright)


def _resize_decoded(image: tf.Tensor, image_size: int) -> tf.Tensor:
    """A decoded RGB uint8 image resized as :func:`read_image` does (eager or in tf.data)."""
    resized = tf.image.resize(image, (image_size, image_size), antialias=True)
    return tf.cast(tf.round(resized), tf.uint8)


def _read_file(path: tf.Tensor, image_size: int) -> tf.Tensor:
    """:func:`read_image` as tf.data ops, for a path tensor (the EXIF orientation is read in
    Python, from the file's header)."""
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    orientation = tf.numpy_function(_orientation, [path], tf.int64, stateful=False)
    return _resize_decoded(_orient(image, orientation), image_size)


def _decode(file: Path, image_size: int) -> np.ndarray | None:
    try:
        return read_image(file, image_size)
    except DataError:
        warnings.warn(f"skipping {file}: {UNREADABLE}", stacklevel=3)
        return None


def load_tf_flowers(image_size: int, test_fraction: float = 0.2) -> tuple[ImageData, ImageData]:
    """tf_flowers (3,670 photos, 5 classes, ~220 MB) downloaded once into the Keras cache."""
    try:
        with downloads.timeout():
            archive = keras.utils.get_file("flower_photos", origin=FLOWERS_URL, extract=True)
    except Exception as exc:
        raise DataError(
            f"tf_flowers is not in the Keras cache and cannot be downloaded ({exc}); it needs "
            "internet once. Offline, use dataset='fashion_mnist' or your own image folder."
        ) from None
    root = Path(archive)  # Keras 3 returns the extracted folder; the photos sit one level down
    folder = next(p for p in [root, *root.iterdir()] if (p / "daisy").is_dir())
    return split(load_image_folder(folder, image_size), test_fraction, seed=0)


def load_dataset(name: str, image_size: int, classes: list[int] | None = None):
    """The book's dataset switch: ``fashion_mnist``, ``tf_flowers`` or a path to an image folder.

    Returns (train, test) ImageData; for a folder of more than :func:`stream_threshold`
    images, (train, test) :class:`ImageFiles`, read from disk as they are used.
    """
    if name == "fashion_mnist":
        return load_fashion_mnist(classes)
    if name == "tf_flowers":
        train, test = load_tf_flowers(image_size)
    elif Path(name).is_dir():
        train, test = split(open_image_folder(name, image_size), 0.2, seed=0)
    else:
        raise DataError(
            f"unknown dataset {name!r}: use 'fashion_mnist', 'tf_flowers' or a path to an "
            "image folder"
        )
    if classes is None:
        return train, test
    return select_classes(train, classes), select_classes(test, classes)


def check_labels(data: Images, n_classes: int) -> None:
    """Fail early when a model's output size does not match the data's classes."""
    if data.n_classes != n_classes or (len(data) and data.labels.max() >= n_classes):
        raise DataError(
            f"the model predicts {n_classes} classes but the data has {data.n_classes} "
            f"({', '.join(data.class_names)}); build the classifier with "
            f"n_classes={data.n_classes}"
        )


def _to_rgb(image: tf.Tensor, image_size: int) -> tf.Tensor:
    if image.shape.rank == 2:
        image = image[..., tf.newaxis]
    if image.shape[-1] == 1:
        image = tf.image.grayscale_to_rgb(image)
    if tuple(image.shape[:2]) != (image_size, image_size):
        image = tf.image.resize(image, (image_size, image_size))
        image = tf.cast(tf.round(tf.clip_by_value(image, 0, 255)), tf.uint8)
    return image


def make_dataset(
    data: Images,
    image_size: int,
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int = 0,
    multiple_of: int = 1,
) -> tf.data.Dataset:
    """A tf.data pipeline of (float32 RGB image in [0, 255], label) batches.

    Images stay at their stored size until a batch is made: shuffling (reshuffled each
    epoch, seeded) comes first, then each image is converted to RGB and resized to
    ``image_size``, then batched; the model does any random augmentation. There is no
    ``cache()``: an ImageData's uint8 array is already in memory (a cache would only copy it,
    and a cache after resizing would hold the whole set at the model's size: ~10 GB for
    Fashion-MNIST's 70,000 images at 224 px), and an :class:`ImageFiles`' files are read and decoded
    from disk in every pass (as :func:`read_image` does) so the folder is never in memory.
    Resizing runs every epoch, on the input threads, while the model computes. For
    ImageData the batches are bit-identical to those of the former convert -> resize ->
    cache -> shuffle pipeline: the same ops on each image and the same shuffle order.

    ``multiple_of`` (the number of replicas, for training and evaluation under several
    replicas) keeps ``len(data)`` rounded down to a multiple of it in each pass: with
    TensorFlow 2.21 and Keras 3.15, ``fit`` and ``evaluate`` under a MirroredStrategy fail
    with "Inputs to operation AddN ... must have the same size and shape" on a last batch
    that does not split evenly over the replicas. At most ``multiple_of - 1`` images are
    left out of a pass (different ones each epoch when shuffled).
    """
    if len(data) == 0:
        raise DataError("the dataset is empty; check the class selection and k per class")
    if len(data) < multiple_of:
        raise DataError(
            f"{len(data)} image(s) cannot be shared by {multiple_of} replicas; use at least "
            f"{multiple_of} images or fewer replicas"
        )
    if isinstance(data, ImageFiles):
        ds = tf.data.Dataset.from_tensor_slices((data.files, data.labels))
        convert = lambda f, y: (_read_file(f, image_size), y)  # noqa: E731
    else:
        ds = tf.data.Dataset.from_tensor_slices((data.images, data.labels))
        convert = lambda x, y: (_to_rgb(x, image_size), y)  # noqa: E731
    if shuffle:
        ds = ds.shuffle(len(data), seed=seed, reshuffle_each_iteration=True)
    if len(data) % multiple_of:
        ds = ds.take(len(data) - len(data) % multiple_of)
    ds = ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size).map(lambda x, y: (tf.cast(x, tf.float32), y))
    return ds.prefetch(tf.data.AUTOTUNE)


def resized_arrays(data: Images, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``data``'s images resized to ``image_size`` (RGB) once, as one array, with the labels."""
    batches = make_dataset(data, image_size, batch_size=256)
    return np.concatenate([x.numpy() for x, _ in batches]), data.labels


def image_hashes(data: ImageData) -> np.ndarray:
    """A SHA-256 digest of every image's shape and pixels: equal digests, identical images.

    The check for leakage (§2.1): a test image whose digest also occurs in the training set
    is one the model may have learned by heart.
    """
    digests = [
        hashlib.sha256(f"{image.shape}".encode() + image.tobytes()).hexdigest()
        for image in np.ascontiguousarray(data.images)
    ]
    return np.array(digests)


def shared_images(reference: ImageData, query: ImageData) -> np.ndarray:
    """Indices of the ``query`` images that also occur, pixel for pixel, in ``reference``."""
    return np.flatnonzero(np.isin(image_hashes(query), image_hashes(reference)))


def nearest_images(
    reference: ImageData, query: ImageData, batch_size: int = 500
) -> tuple[np.ndarray, np.ndarray]:
    """For every ``query`` image, the closest ``reference`` image by pixel distance.

    Returns (index into ``reference``, root-mean-square pixel difference on a 0-1 scale):
    0 means identical, a few thousandths a near-duplicate that an exact hash misses (§2.1).
    Also a 1-nearest-neighbour classifier: ``reference.labels[index]`` is its prediction.
    """
    if reference.images.shape[1:] != query.images.shape[1:]:
        raise DataError(
            f"cannot compare images of shape {reference.images.shape[1:]} with "
            f"{query.images.shape[1:]}; resize one set to the other's shape first"
        )
    ref = reference.images.reshape(len(reference), -1).astype("float32") / 255
    ref_sq = np.einsum("ij,ij->i", ref, ref)
    indices, distances = [], []
    for start in range(0, len(query), batch_size):
        q = query.images[start : start + batch_size].reshape(-1, ref.shape[1]).astype("float32")
        q /= 255
        best = np.argmin(ref_sq[None, :] - 2 * q @ ref.T, axis=1)  # |q - r|^2 minus |q|^2
        indices.append(best)
        distances.append(np.sqrt(np.mean((q - ref[best]) ** 2, axis=1)))  # exact 0 if equal
    return np.concatenate(indices), np.concatenate(distances)
