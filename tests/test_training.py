"""Training helpers: records, determinism, label checks, the two-phase fine-tune (§4.4)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from ftutils import config, data, distribute, frozen, models, recipe, training
from ftutils.errors import DataError


def _toy(n=30, size=32, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % n_classes
    # Class-dependent brightness, so there is something to learn.
    images = rng.integers(0, 60, (n, size, size, 3)) + 80 * labels[:, None, None, None]
    return data.ImageData(images.astype("uint8"), labels, tuple(f"c{i}" for i in range(n_classes)))


def _train_once(seed):
    config.set_seed(seed)
    model = models.build_classifier("mobilenet_v2", 3, 32, weights=None, dropout=0.5)
    training.compile_classifier(model, "adam", 1e-2)
    training.fit_classifier(model, _toy(), _toy(seed=1), epochs=2, seed=seed, verbose=0)
    return model.get_layer("classifier").kernel.numpy()


def test_same_seed_gives_identical_training_results():
    first, second = _train_once(0), _train_once(0)
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, _train_once(1))


def _small_fit(compile_model):
    """A dense head on fixed features, compiled by ``compile_model``, after 2 epochs; its
    weights and how many times its training step was traced (each trace calls
    ``train_step`` once per replica)."""
    config.set_seed(0)
    head = models.build_head(16, 3)
    compile_model(head)
    traced = []
    step = head.train_step
    head.train_step = lambda batch: traced.append(1) or step(batch)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 16)).astype("float32"), np.arange(40) % 3
    head.fit(x, y, validation_data=(x, y), epochs=2, batch_size=8, verbose=0)
    return head.get_weights(), len(traced) / distribute.replicas(head)


def test_compiled_models_trace_their_training_step_once_and_train_as_keras_would():
    ours, ours_traced = _small_fit(training.compile_classifier)

    def plain_compile(model):
        with distribute.scope_of(model):
            model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])

    plain, plain_traced = _small_fit(plain_compile)
    assert ours_traced == 1
    # Without a strategy of its own (a single CPU or GPU), Keras alone makes Adam's and the
    # metric's variables inside the first trace, which TensorFlow then traces again
    # (docs/traps.md); under a strategy it builds them before tracing, as we do
    default = type(tf.distribute.get_strategy())
    assert plain_traced == (2 if isinstance(distribute.strategy(), default) else 1)
    for a, b in zip(ours, plain, strict=True):
        np.testing.assert_array_equal(a, b)  # the same training, bit for bit


def test_fit_rejects_data_with_other_classes():
    model = models.build_classifier("mobilenet_v2", 10, 32, weights=None)
    training.compile_classifier(model)
    with pytest.raises(DataError, match="predicts 10 classes but the data has 3"):
        training.fit_classifier(model, _toy(), _toy(), epochs=1, verbose=0)


def test_fine_tune_records_both_phases_in_order_on_image_data():
    model = models.build_classifier("mobilenet_v2", 3, 32, weights=None)
    record = recipe.fine_tune(
        model, _toy(), _toy(seed=1), head_epochs=2, finetune_epochs=1, unfreeze_top_n=5,
        patience=None,
    )  # fmt: skip
    assert [row["phase"] for row in record.rows] == ["head", "head", "fine-tune"]
    assert record.phases() == [("head", 1, 2), ("fine-tune", 3, 3)]
    assert len(record.series("val_accuracy")) == 3
    assert models.base_of(model).trainable_weights  # phase 2 left the top unfrozen
    assert not any(bn.trainable for bn in models.base_of(model).layers if "BN" in bn.name)


def test_fine_tune_on_cached_parts_returns_a_compiled_model(tmp_path, monkeypatch):
    monkeypatch.setattr(frozen, "CACHE_DIR", tmp_path)
    model = models.build_classifier("mobilenet_v2", 3, 32, weights=None)
    record = recipe.fine_tune(model, _toy(), _toy(seed=1), head_epochs=1, finetune_epochs=1,
                              unfreeze_from="block_16_expand")  # fmt: skip
    assert record.phases() == [("head", 1, 1), ("fine-tune", 2, 2)]
    loss, accuracy = model.evaluate(data.make_dataset(_toy(seed=1), 32, 8), verbose=0)
    assert np.isfinite(loss) and 0.0 <= accuracy <= 1.0


def _as_dataset(d, shuffle):
    ds = tf.data.Dataset.from_tensor_slices((d.images.astype("float32"), d.labels))
    return (ds.shuffle(len(d), seed=0) if shuffle else ds).batch(8)


def test_fine_tune_takes_a_tf_data_dataset_and_trains_the_model_itself(tmp_path, monkeypatch):
    monkeypatch.setattr(frozen, "CACHE_DIR", tmp_path)
    model = models.build_classifier("mobilenet_v2", 3, 32, weights="imagenet")
    train, val = _toy(), _toy(seed=1)
    kernel = model.get_layer("classifier").kernel.numpy()
    conv = models.base_of(model).get_layer("Conv_1").kernel.numpy()
    record = recipe.fine_tune(
        model, _as_dataset(train, shuffle=True), _as_dataset(val, shuffle=False),
        head_epochs=10, finetune_epochs=2, head_lr=0.01, unfreeze_from="block_16_expand",
        patience=None, cache_features=True,
    )  # fmt: skip
    assert record.phases() == [("head", 1, 10), ("fine-tune", 11, 12)]

    assert np.abs(model.get_layer("classifier").kernel.numpy() - kernel).max() > 1e-4
    assert np.abs(models.base_of(model).get_layer("Conv_1").kernel.numpy() - conv).max() > 0
    # features computed once from a reshuffling dataset stay paired with their own labels
    shuffled, labels = recipe._activations(frozen.cut(model).lower, _as_dataset(train, True))
    in_order = frozen.extract_features(model, train)
    rows = [int(np.argmin(np.abs(in_order - row).sum(axis=1))) for row in shuffled]
    assert sorted(rows) == list(range(len(train)))
    np.testing.assert_array_equal(labels, train.labels[rows])


def test_record_with_validation_every_other_epoch():
    history = keras.callbacks.History()
    history.history = {"loss": [3.0, 2.0, 1.0, 0.5], "val_loss": [2.5, 0.7]}
    record = training.TrainingRecord()
    record.add("head", history, validation_freq=2)
    np.testing.assert_array_equal(record.series("val_loss"), [np.nan, 2.5, np.nan, 0.7])
    with pytest.raises(ValueError, match="validation_freq"):
        record.add("head", history)


def test_epoch_timer_adds_epoch_seconds():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    timer = training.EpochTimer()
    history = model.fit(np.ones((4, 2)), np.zeros(4), epochs=3, callbacks=[timer], verbose=0)
    assert len(timer.seconds) == 3 and all(s > 0 for s in timer.seconds)
    assert history.history["epoch_seconds"] == timer.seconds


def test_unknown_optimizer():
    with pytest.raises(ValueError, match="choose from sgd, momentum"):
        training.make_optimizer("lbfgs", 0.1)


def test_cached_features_match_the_model_and_are_reused(tmp_path, monkeypatch):
    monkeypatch.setattr(frozen, "CACHE_DIR", tmp_path)
    model = models.build_classifier("mobilenet_v2", 3, 32, weights="imagenet")
    toy = _toy()
    first = frozen.extract_features(model, toy)
    assert first.shape == (len(toy), 1280)
    assert len(list(tmp_path.glob("activations/*.npy"))) == 1
    direct = frozen.cut(model).lower.predict(data.make_dataset(toy, 32), verbose=0)
    np.testing.assert_allclose(first, direct, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(frozen.extract_features(model, toy), first)


def test_a_separate_head_trained_on_features_transfers_to_the_full_model(tmp_path, monkeypatch):
    monkeypatch.setattr(frozen, "CACHE_DIR", tmp_path)
    model = models.build_classifier("mobilenet_v2", 3, 32, weights="imagenet")
    train, val = _toy(), _toy(seed=1)
    x_train, x_val = (frozen.extract_features(model, d) for d in (train, val))
    head, record = frozen.train_head(x_train, train.labels, x_val, val.labels, 3, epochs=5)
    assert len(record.rows) == 5
    models.copy_head(head, model)
    np.testing.assert_array_equal(
        training.predict_labels(model, val), training.predict_labels(head, x_val)
    )


def test_keep_best_accuracy_checks_every_k_steps_and_keeps_the_best_weights():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    model = models.build_head(5, 2, dropout=0.0)
    training.compile_classifier(model, "adam", 0.05)
    keep = training.KeepBestAccuracy(x[:32], y[:32], steps_per_check=2)
    batches = tf.data.Dataset.from_tensor_slices((x[32:], y[32:])).repeat().batch(8)
    model.fit(batches, epochs=4, steps_per_epoch=2, shuffle=False, callbacks=[keep], verbose=0)
    assert len(keep.curve) == 4
    assert keep.best == max(keep.curve)
    assert keep.best_step == 2 * (int(np.argmax(keep.curve)) + 1)
    model.set_weights(keep.weights)
    assert training.inference_accuracy(model, x[:32], y[:32]) == keep.best


def test_budget_then_convergence_scores_twice_and_keeps_the_lowest_validation_loss():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 5)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    train_xy, val_xy, test_xy = (x[:48], y[:48]), (x[48:72], y[48:72]), (x[72:], y[72:])
    model = models.build_head(5, 2, dropout=0.0)
    config.set_seed(7)
    untouched = float(np.random.rand()), float(tf.random.uniform(()))
    config.set_seed(7)
    scores, history = training.fit_budget_then_convergence(
        model, train_xy, val_xy, test_xy,
        learning_rate=0.05, budget=2, patience=2, max_epochs=30, seed=0,
    )  # fmt: skip
    assert (float(np.random.rand()), float(tf.random.uniform(()))) == untouched
    losses = history["val_loss"]
    assert scores.best_epoch == int(np.argmin(losses)) + 1
    assert len(losses) >= 2 and len(losses) - scores.best_epoch <= 2  # stopped after patience
    assert 0 <= scores.at_budget <= 1
    assert scores.at_convergence == training.accuracy(model, *test_xy, batch_size=250)


def test_resized_arrays_gives_rgb_at_the_size_with_labels():
    images, labels = data.resized_arrays(_toy(n=6, size=20), 32)
    assert images.shape == (6, 32, 32, 3) and labels.shape == (6,)
