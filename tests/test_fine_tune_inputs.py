"""``fine_tune`` on a reader's own tf.data pipeline, loss and optimizer (§4.4).

Under ``make test-distributed`` (two replicas) the uneven last batches below also check
``distribute.even_batches`` inside ``fine_tune``.
"""

import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from ftutils import augment, config, distribute, frozen, models, recipe, training

SIZE = 32


def _toy(n=13, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    images = rng.integers(0, 60, (n, SIZE, SIZE, 3)) + 80 * labels[:, None, None, None]
    return images.astype("float32"), labels


def _dataset(n=13, seed=0, batch=4, one_hot=False, drawn=None):
    """(images, labels) batches; the last one uneven. ``drawn`` counts the images mapped."""
    images, labels = _toy(n, seed)
    y = np.eye(3, dtype="float32")[labels] if one_hot else labels
    ds = tf.data.Dataset.from_tensor_slices((images, y))
    if drawn is not None:
        count = lambda x: drawn.append(1) or x  # noqa: E731
        ds = ds.map(lambda x, y: (tf.numpy_function(count, [x], tf.float32), y))
        ds = ds.map(lambda x, y: (tf.ensure_shape(x, (SIZE, SIZE, 3)), y))
    return ds.batch(batch)


def _model():
    config.set_seed(0)
    return models.build_classifier("mobilenet_v2", 3, SIZE, weights=None)


def test_a_dataset_must_say_whether_its_batches_may_be_computed_once():
    with pytest.raises(ValueError, match="cache_features=False if it is"):
        recipe.fine_tune(_model(), _dataset(), _dataset(seed=1), head_epochs=1)
    augmenting = models.build_classifier("mobilenet_v2", 3, SIZE, weights=None,
                                         augmentation=augment.augmentation())  # fmt: skip
    with pytest.raises(ValueError, match="augments its inputs"):
        recipe.fine_tune(augmenting, _dataset(), _dataset(seed=1), cache_features=True)


def test_a_random_pipeline_goes_through_the_network_every_epoch(tmp_path, monkeypatch):
    monkeypatch.setattr(frozen, "CACHE_DIR", tmp_path)
    drawn = []
    recipe.fine_tune(_model(), _dataset(drawn=drawn), _dataset(seed=1), head_epochs=3,
                     finetune_epochs=0, patience=None, cache_features=False)  # fmt: skip
    assert len(drawn) >= 3 * 13  # each epoch maps (draws) every image anew
    drawn.clear()
    recipe.fine_tune(_model(), _dataset(drawn=drawn), _dataset(seed=1), head_epochs=3,
                     finetune_epochs=0, patience=None, cache_features=True)  # fmt: skip
    assert len(drawn) < 2 * 13  # features computed once (several replicas read ahead)


def test_one_hot_labels_a_categorical_loss_an_optimizer_object_a_schedule(tmp_path, monkeypatch):
    monkeypatch.setattr(frozen, "CACHE_DIR", tmp_path)
    model = _model()
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-3, decay_steps=2, decay_rate=0.5)
    optimizer = keras.optimizers.SGD(0.5, momentum=0.8, nesterov=True)
    record = recipe.fine_tune(
        model, _dataset(one_hot=True), _dataset(seed=1, one_hot=True), head_epochs=2,
        finetune_epochs=1, head_lr=0.01, finetune_lr=schedule, unfreeze_top_n=5,
        optimizer=optimizer, loss="categorical_crossentropy", patience=None,
        cache_features=True,
    )  # fmt: skip
    assert record.phases() == [("head", 1, 2), ("fine-tune", 3, 3)]
    assert all(0 <= row["accuracy"] <= 1 and np.isfinite(row["val_loss"]) for row in record.rows)
    used = model.optimizer
    assert isinstance(used, keras.optimizers.SGD) and used is not optimizer
    assert used.momentum == 0.8 and used.nesterov
    assert isinstance(used._learning_rate, keras.optimizers.schedules.ExponentialDecay)
    assert float(optimizer.learning_rate) == 0.5  # the object given is left as it was
    x, labels = _toy(6)
    _, accuracy = model.evaluate(x, np.eye(3)[labels], verbose=0)
    predicted = np.argmax(model.predict(x, verbose=0), axis=1)
    assert accuracy == pytest.approx(np.mean(predicted == labels))


def test_the_loss_chooses_the_accuracy():
    head = models.build_head(4, 3)
    training.compile_classifier(head, loss="categorical_crossentropy")
    x, labels = np.eye(4, dtype="float32"), [0, 1, 2, 0]
    _, accuracy = head.evaluate(x, np.eye(3)[labels], verbose=0)
    predicted = np.argmax(head.predict(x, verbose=0), axis=1)
    assert accuracy == pytest.approx(np.mean(predicted == labels))
    with pytest.raises(ValueError, match="or pass a keras.optimizers.Optimizer"):
        training.make_optimizer("adamw", 1e-3)


def test_even_batches_cut_every_batch_to_a_multiple_of_the_replicas():
    two = types.SimpleNamespace(distribute_strategy=types.SimpleNamespace(num_replicas_in_sync=2))
    ds = tf.data.Dataset.from_tensor_slices((np.arange(11), np.arange(11) * 10)).batch(4)
    ds = ds.concatenate(tf.data.Dataset.from_tensors((np.arange(1), np.arange(1))))
    sizes = [(len(x), len(y)) for x, y in distribute.even_batches(ds, two).as_numpy_iterator()]
    assert sizes == [(4, 4), (4, 4), (2, 2)]  # 3 of the last 4 kept as 2, a batch of 1 dropped
    dicts = tf.data.Dataset.from_tensor_slices({"a": np.arange(5)}).batch(5)
    assert [len(b["a"]) for b in distribute.even_batches(dicts, two).as_numpy_iterator()] == [4]
    one = types.SimpleNamespace(distribute_strategy=types.SimpleNamespace(num_replicas_in_sync=1))
    assert distribute.even_batches(ds, one) is ds


def test_uneven_last_batches_train_under_the_configured_replicas(tmp_path, monkeypatch):
    monkeypatch.setattr(frozen, "CACHE_DIR", tmp_path)
    record = recipe.fine_tune(_model(), _dataset(batch=4 * distribute.replicas()),
                              _dataset(seed=1), head_epochs=1, finetune_epochs=1,
                              unfreeze_top_n=5, patience=None, cache_features=False)  # fmt: skip
    assert record.phases() == [("head", 1, 1), ("fine-tune", 2, 2)]
