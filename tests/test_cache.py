"""ftutils.cache.key: one key for every cache, changed by anything a result depends on."""

import dataclasses
import functools

import numpy as np
import pytest

from ftutils import cache
from ftutils.data import ImageData, ImageFiles


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


def make_run(learning_rate):
    def run(seed):
        return {"accuracy": learning_rate * seed}

    return run


def test_closures_from_one_factory_are_keyed_by_their_bound_values():
    assert cache.key(make_run(0.1)) != cache.key(make_run(0.01))
    assert cache.key(make_run(0.1)) == cache.key(make_run(0.1))


def test_partials_are_keyed_by_function_arguments_and_keywords():
    def train(lr, epochs=1):
        return lr * epochs

    assert cache.key(functools.partial(train, 0.1)) != cache.key(functools.partial(train, 0.01))
    assert cache.key(functools.partial(train, 0.1, epochs=2)) != cache.key(
        functools.partial(train, 0.1, epochs=3)
    )
    assert cache.key(functools.partial(train, 0.1)) == cache.key(functools.partial(train, 0.1))


def test_two_lambdas_on_one_line_and_their_defaults_get_two_keys():
    double, triple = (lambda x: 2 * x), (lambda x: 3 * x)  # noqa: E731
    assert cache.key(double) != cache.key(triple)
    low, high = (lambda x, lr=0.1: lr * x), (lambda x, lr=0.2: lr * x)  # noqa: E731
    assert cache.key(low) != cache.key(high)

    def keyword_only(*, lr=0.1):
        return lr

    before = cache.key(keyword_only)
    keyword_only.__kwdefaults__ = {"lr": 0.2}
    assert cache.key(keyword_only) != before


TRAIN = np.zeros(3)
DATASET = "fashion_mnist"


def _reads_globals(seed):
    return {"accuracy": float(TRAIN.sum()) + seed, "data": DATASET, "helper": _helper(seed)}


def _helper(seed):
    return seed * _SCALE


_SCALE = 2


def test_a_function_is_keyed_by_the_global_data_it_reads(monkeypatch):
    import tests.test_cache as module

    key = cache.key(_reads_globals)
    monkeypatch.setattr(module, "TRAIN", np.ones(3))
    assert cache.key(_reads_globals) != key
    monkeypatch.setattr(module, "TRAIN", np.zeros(3))
    assert cache.key(_reads_globals) == key
    monkeypatch.setattr(module, "DATASET", "tf_flowers")
    assert cache.key(_reads_globals) != key


def test_functions_of_the_running_notebook_are_followed_with_a_guard_against_cycles():
    code = """
import dataclasses
import functools

import numpy as np
SCALE = 2
def helper(x):
    return ping(x) * SCALE
def ping(x):
    return helper(x - 1) if x > 0 else np.float64(x)
def run(seed):
    return {"a": helper(seed)}
"""
    namespace = {"__name__": "__main__"}
    exec(compile(code, "<cell>", "exec"), namespace)  # noqa: S102 - as a notebook cell runs
    key = cache.key(namespace["run"])
    namespace["SCALE"] = 3  # read by a function run calls
    assert cache.key(namespace["run"]) != key
    namespace["SCALE"] = 2
    assert cache.key(namespace["run"]) == key


def test_what_cannot_be_keyed_honestly_is_refused_by_name():
    class Settings:
        lr = 0.1

        def run(self, seed):
            return self.lr * seed

    settings = Settings()
    with pytest.raises(TypeError, match="the variable 'settings' that .* closes over"):
        cache.key(lambda: settings.lr)
    with pytest.raises(TypeError, match="cannot key a cache on a Settings"):
        cache.key(settings)
    with pytest.raises(TypeError, match="the object of the method"):
        cache.key(settings.run)


def test_keras_layers_and_models_are_keyed_by_config_and_weights():
    import keras

    def dense(units, seed):
        keras.utils.set_random_seed(seed)
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(units)])

    assert cache.key(dense(2, 0)) == cache.key(dense(2, 0))
    assert cache.key(dense(2, 0)) != cache.key(dense(2, 1))  # other weights
    assert cache.key(dense(2, 0)) != cache.key(dense(3, 0))  # another config
    frozen = dense(2, 0)
    frozen.layers[0].trainable = False
    assert cache.key(frozen) != cache.key(dense(2, 0))  # another layer trains
    relu = keras.layers.Dense(2, activation="relu")
    assert cache.key(relu) != cache.key(keras.layers.Dense(2, activation="tanh"))
    assert cache.key(keras.optimizers.Adam(1e-3)) != cache.key(keras.optimizers.Adam(1e-4))


def test_a_bound_method_is_keyed_by_its_object():
    @dataclasses.dataclass
    class Sweep:
        lr: float

        def run(self, seed):
            return self.lr * seed

    assert cache.key(Sweep(0.1).run) != cache.key(Sweep(0.2).run)
    assert cache.key(Sweep(0.1).run) == cache.key(Sweep(0.1).run)


def test_image_files_are_keyed_by_their_files_fingerprint(tmp_path):
    paths = []
    for name in ("a.png", "b.png"):
        paths.append(tmp_path / name)
        paths[-1].write_bytes(b"12345")
    files = ImageFiles(np.array([str(p) for p in paths]), np.array([0, 1]), ("a", "b"))
    key = cache.key(files)
    assert cache.key(files) == key
    paths[1].write_bytes(b"1234567")  # an edited file
    assert cache.key(files) != key


def test_a_class_of_the_running_notebook_is_keyed_by_its_methods_and_data():
    code = """
class Probe:
    STEPS = 10
    def run(self, x):
        return x * self.STEPS
def run(seed):
    return Probe().run(seed)
"""
    keys = []
    for steps, factor in ((10, "self.STEPS"), (20, "self.STEPS"), (10, "2 * self.STEPS")):
        namespace = {"__name__": "__main__"}
        changed = code.replace("STEPS = 10", f"STEPS = {steps}").replace(
            "x * self.STEPS", f"x * {factor}"
        )
        exec(compile(changed, "<cell>", "exec"), namespace)  # noqa: S102 - as a notebook cell runs
        keys.append(cache.key(namespace["run"]))
    assert len(set(keys)) == 3
