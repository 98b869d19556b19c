import numpy as np
import pytest

from ftutils import data
from ftutils.errors import DataError


def _toy(n_per_class=10, n_classes=3, shape=(8, 8)):
    images = np.arange(n_per_class * n_classes * np.prod(shape), dtype=np.uint32) % 251
    images = images.astype("uint8").reshape(n_per_class * n_classes, *shape)
    labels = np.repeat(np.arange(n_classes), n_per_class)
    return data.ImageData(images, labels, tuple(f"c{i}" for i in range(n_classes)))


def test_fashion_mnist_loads_from_cache_with_class_split():
    source, source_test = data.load_fashion_mnist(classes=[0, 1, 2, 3, 4])
    target, _ = data.load_fashion_mnist(classes=[5, 6, 7, 8, 9])
    assert source.images.shape == (30000, 28, 28) and source.images.dtype == np.uint8
    assert len(source_test) == 5000
    assert source.class_names[0] == "T-shirt/top" and target.class_names[0] == "Sandal"
    assert set(np.unique(target.labels)) == set(range(5))


def test_per_class_is_stratified_and_seeded():
    toy = _toy()
    a = data.per_class(toy, 4, seed=1)
    b = data.per_class(toy, 4, seed=1)
    c = data.per_class(toy, 4, seed=2)
    assert a.class_counts().tolist() == [4, 4, 4]
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.images, c.images)


def test_per_class_too_many_names_the_limit():
    with pytest.raises(DataError, match="smallest class has 10"):
        data.per_class(_toy(), 11)


def test_split_is_stratified_and_disjoint():
    toy = _toy(n_per_class=10)
    rest, held = data.split(toy, 0.2, seed=0)
    assert held.class_counts().tolist() == [2, 2, 2]
    assert rest.class_counts().tolist() == [8, 8, 8]
    rest_rows = {img.tobytes() for img in rest.images}
    assert not any(img.tobytes() in rest_rows for img in held.images)


def test_make_dataset_gives_rgb_float_batches_at_image_size():
    ds = data.make_dataset(_toy(), image_size=32, batch_size=5)
    images, labels = next(iter(ds))
    assert images.shape == (5, 32, 32, 3) and images.dtype.name == "float32"
    assert float(images.numpy().max()) <= 255.0
    assert labels.shape == (5,)


def test_make_dataset_reshuffles_each_epoch_but_is_seeded():
    ds = data.make_dataset(_toy(), 8, batch_size=30, shuffle=True, seed=3)
    first, second = (next(iter(ds))[1].numpy() for _ in range(2))
    assert not np.array_equal(first, second)
    again = next(iter(data.make_dataset(_toy(), 8, batch_size=30, shuffle=True, seed=3)))[1]
    np.testing.assert_array_equal(first, again.numpy())


def test_check_labels_names_the_mismatch():
    with pytest.raises(DataError, match="n_classes=3"):
        data.check_labels(_toy(), 10)


def test_holdout_indices_is_stratified_disjoint_and_complete():
    labels = np.repeat(np.arange(3), 5)
    rest, held = data.holdout_indices(labels, n_classes=3, per_class=2, seed=1)
    assert np.bincount(labels[held], minlength=3).tolist() == [2, 2, 2]
    assert sorted(np.concatenate([rest, held]).tolist()) == list(range(15))
    with pytest.raises(data.DataError, match="smallest class has 5"):
        data.holdout_indices(labels, n_classes=3, per_class=5)
