"""ftutils.shift_families: the held-out test-time shifts of §3.5."""

import numpy as np
import pytest

from ftutils import shift_families as sf

rng = np.random.default_rng(0)
GREY = rng.integers(0, 256, (4, 28, 28), dtype=np.uint8)
RGB = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)


@pytest.mark.parametrize("images", [GREY, RGB])
@pytest.mark.parametrize(
    "shift",
    [
        lambda x: sf.gaussian_blur(x, 1.0),
        sf.invert,
        lambda x: sf.gaussian_noise(x, 20.0, seed=1),
        lambda x: sf.center_crop(x, 0.6),
    ],
)
def test_shape_and_dtype_are_kept_and_the_images_change(images, shift):
    shifted = shift(images)
    assert shifted.shape == images.shape and shifted.dtype == np.uint8
    assert not np.array_equal(shifted, images)


def test_invert_twice_is_the_identity():
    assert np.array_equal(sf.invert(sf.invert(GREY)), GREY)
    assert sf.invert(np.zeros((1, 2, 2), np.uint8)).max() == 255


def test_blur_keeps_a_flat_interior_and_spreads_a_point():
    flat = np.full((1, 20, 20), 100, np.uint8)
    assert np.all(sf.gaussian_blur(flat, 1.0)[0, 5:15, 5:15] == 100)
    point = np.zeros((1, 9, 9), np.uint8)
    point[0, 4, 4] = 255
    blurred = sf.gaussian_blur(point, 1.0)[0]
    assert blurred[4, 4] < 255 and blurred[4, 5] > 0 and blurred[4, 5] == blurred[5, 4]


def test_noise_is_seeded():
    assert np.array_equal(sf.gaussian_noise(GREY, 20.0, 3), sf.gaussian_noise(GREY, 20.0, 3))
    assert not np.array_equal(sf.gaussian_noise(GREY, 20.0, 3), sf.gaussian_noise(GREY, 20.0, 4))


def test_center_crop_of_everything_is_the_identity_and_a_part_enlarges():
    assert np.array_equal(sf.center_crop(GREY, 1.0), GREY)
    square = np.zeros((1, 20, 20), np.uint8)
    square[0, 8:12, 8:12] = 255  # a 4-px square in the centre
    assert (sf.center_crop(square, 0.5)[0] > 128).sum() > (square[0] > 128).sum()


def test_refuses_what_is_not_uint8_images():
    with pytest.raises(ValueError):
        sf.invert(GREY.astype("float32"))
    with pytest.raises(ValueError):
        sf.gaussian_blur(GREY, 0)
    with pytest.raises(ValueError):
        sf.center_crop(GREY, 1.5)
