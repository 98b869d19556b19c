"""ftutils.cache.key: one key for every cache, changed by anything a result depends on."""

import numpy as np
import pytest

from ftutils import cache
from ftutils.data import ImageData


def _data(pixel=0):
    images = np.full((2, 4, 4), pixel, dtype="uint8")
    return ImageData(images, np.array([0, 1]), ("a", "b"))


def test_numbers_are_numbers_and_dict_order_does_not_matter():
    assert cache.key({"seed": np.int64(1), "lr": 0.1}) == cache.key({"lr": 0.1, "seed": 1})
    assert cache.key({"seed": 1}) != cache.key({"seed": 2})
    assert cache.key([1, 2]) != cache.key([2, 1])


def test_image_data_is_keyed_by_its_content_not_its_description():
    same_description = _data(pixel=1)
    assert repr(same_description) == repr(_data())
    assert cache.key(_data()) == cache.key(_data())
    assert cache.key(same_description) != cache.key(_data())


def test_an_edited_function_gets_another_key():
    def run(seed):
        return {"accuracy": 0.5}

    def edited_run(seed):
        return {"accuracy": 0.6}

    assert cache.key("sweep", run) != cache.key("sweep", edited_run)


def test_arrays_of_another_dtype_or_shape_get_another_key():
    a = np.zeros(4, "float32")
    assert cache.key(a) != cache.key(a.astype("float64"))
    assert cache.key(a) != cache.key(a.reshape(2, 2))


def test_a_value_without_a_stable_key_is_refused():
    with pytest.raises(TypeError, match="cannot key a cache on a set"):
        cache.key({1, 2})


def test_an_interrupted_write_leaves_no_file(tmp_path):
    target = tmp_path / "sub" / "result.npy"

    def failing_write(temporary):
        np.save(temporary, np.zeros(3))
        raise KeyboardInterrupt  # the kernel was interrupted mid-way

    with pytest.raises(KeyboardInterrupt):
        cache.write_atomically(target, failing_write)
    assert list(tmp_path.rglob("*")) == [tmp_path / "sub"]  # neither the file nor a leftover
    cache.write_atomically(target, lambda temporary: np.save(temporary, np.ones(3)))
    np.testing.assert_array_equal(np.load(target), np.ones(3))
    assert [p.name for p in target.parent.iterdir()] == ["result.npy"]


def test_a_rebuilt_model_keys_alike_and_another_input_scaling_does_not():
    """Activations are keyed by what the extractor computes, not only by its weights: two
    extractors with the same (no) weights but another preprocessing layer get two keys."""
    import keras

    def extractor(scaling: keras.Layer) -> keras.Model:
        image = keras.Input((8, 8, 3))
        return keras.Model(image, keras.layers.GlobalAveragePooling2D()(scaling(image)))

    tf_scaling = extractor(keras.layers.Rescaling(1 / 127.5, offset=-1.0))
    rebuilt = extractor(keras.layers.Rescaling(1 / 127.5, offset=-1.0))
    other = extractor(keras.layers.Rescaling(1 / 255))
    assert cache.key(cache.architecture(tf_scaling)) == cache.key(cache.architecture(rebuilt))
    assert cache.key(cache.architecture(tf_scaling)) != cache.key(cache.architecture(other))
