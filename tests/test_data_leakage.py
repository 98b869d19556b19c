"""Leakage checks (§2.1): exact duplicates by hash, near-duplicates by pixel distance."""

import numpy as np
import pytest

from ftutils import data
from ftutils.errors import DataError


def _set(images, labels=None):
    images = np.asarray(images, dtype="uint8")
    labels = np.zeros(len(images), dtype="int64") if labels is None else np.asarray(labels)
    return data.ImageData(images, labels, ("a", "b"))


def _random(n, seed, shape=(6, 6)):
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype="uint8")


def test_equal_images_have_equal_hashes_and_one_changed_pixel_does_not():
    images = _random(3, 0)
    images[2] = images[0]
    changed = images[0].copy()
    changed[3, 3] ^= 1
    hashes = data.image_hashes(_set([*images, changed]))
    assert len(hashes) == 4 and len(hashes[0]) == 64
    assert hashes[0] == hashes[2]
    assert len(set(hashes)) == 3  # the one-pixel change is a different image


def test_hash_depends_on_shape_not_only_on_bytes():
    flat = np.arange(36, dtype="uint8")
    a = data.image_hashes(_set(flat.reshape(1, 6, 6)))
    b = data.image_hashes(_set(flat.reshape(1, 4, 9)))
    assert a[0] != b[0]


def test_shared_images_finds_the_leaked_test_images():
    train, test = _random(20, 1), _random(10, 2)
    test[[3, 7]] = train[[5, 0]]  # two training images leak into the test set
    assert data.shared_images(_set(train), _set(test)).tolist() == [3, 7]
    assert data.shared_images(_set(train), _set(_random(10, 3))).size == 0


def test_nearest_images_finds_exact_and_near_duplicates():
    reference = _random(50, 4)
    query = np.stack([reference[7], reference[30].copy(), _random(1, 5)[0]])
    query[1, 0, 0] = 255 - query[1, 0, 0]  # one pixel changed: a near-duplicate
    index, distance = data.nearest_images(_set(reference), _set(query), batch_size=2)
    assert index[:2].tolist() == [7, 30]
    assert distance[0] == 0.0
    assert 0 < distance[1] < 0.2 < distance[2]


def test_nearest_images_is_a_one_nearest_neighbour_classifier():
    rng = np.random.default_rng(6)
    labels = np.arange(40) % 2
    images = (rng.integers(0, 60, (40, 5, 5)) + 150 * labels[:, None, None]).astype("uint8")
    reference, query = _set(images[:30], labels[:30]), _set(images[30:], labels[30:])
    index, _ = data.nearest_images(reference, query)
    np.testing.assert_array_equal(reference.labels[index], query.labels)


def test_nearest_images_refuses_different_shapes():
    with pytest.raises(DataError, match="resize one set"):
        data.nearest_images(_set(_random(2, 0)), _set(_random(2, 0, shape=(5, 5))))
