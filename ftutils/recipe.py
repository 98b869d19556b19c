"""The fine-tuning workflow of §4.4 as two calls a reader can lift into their own code.

:func:`fine_tune` is the article's two steps on one classifier: train the new head with the
base frozen, then unfreeze the top of the base (BatchNormalization kept frozen) at a lower
learning rate. Whatever stays frozen is computed once (``ftutils.frozen``) when nothing is
augmented. :func:`feature_ensemble` is the book's default recipe for a small labelled set:
features from several depths of two frozen bases, several heads averaged, as one Keras model.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from ftutils import backbones, cache, config, distribute, frozen, models
from ftutils.data import ImageData, ImageFiles
from ftutils.errors import ResumeError
from ftutils.training import TrainingRecord, callbacks, compile_classifier, fit_classifier

Data = ImageData | ImageFiles | tf.data.Dataset

#: In a run folder (``fine_tune(run_dir=...)``): the phases that have finished, with the
#: record's rows of each, and (in each phase's folder) the weights it ended with.
PHASES_FILE = "phases.json"
END_WEIGHTS = "end-weights.npz"
#: In a run folder: what the training depends on; another training is refused the folder.
FINGERPRINT_FILE = "fingerprint.json"

#: The first layer of each base's last block: where :func:`fine_tune` starts to unfreeze when
#: only the top block is to be fine-tuned (§4.4). No skip connection crosses these cuts, so
#: everything below them stays frozen and is computed once.
TOP_BLOCK = {
    "mobilenet": "conv_dw_13",
    "mobilenet_025": "conv_dw_13",
    "mobilenet_v2": "block_16_expand",
    "vgg16": "block5_conv1",
    "resnet50": "conv5_block3_1_conv",
    "efficientnet_b0": "block7a_expand_conv",
}


def fine_tune(
    model: keras.Model,
    train: Data,
    val: Data,
    head_epochs: int = 20,
    finetune_epochs: int = 10,
    head_lr: float = 1e-3,
    finetune_lr: float = 1e-4,
    unfreeze_from: str | None = None,
    unfreeze_top_n: int | None = None,
    optimizer: str = "adam",
    patience: int | None = 3,
    batch_size: int = 32,
    seed: int = 0,
    record: TrainingRecord | None = None,
    verbose: int = 0,
    run_dir: str | Path | None = None,
) -> TrainingRecord:
    """Train a :func:`ftutils.models.build_classifier` model in the two phases of §4.4.

    ``train`` and ``val``: ImageData (or ImageFiles, treated alike), or ``tf.data.Dataset``
    of ``(images, labels)`` batches
    with images in [0, 255] at the model's input size (batch them per the global batch when
    training on several replicas). Phase 1 ("head", ``head_epochs``, ``head_lr``) trains the
    head with the base frozen: on features computed once when the model does not augment its
    inputs, else through the base. Phase 2 ("fine-tune", ``finetune_epochs``,
    ``finetune_lr``) unfreezes the base from layer ``unfreeze_from`` (or its last
    ``unfreeze_top_n`` layers, or all of it when neither is given) with BatchNormalization
    frozen; from ImageData without augmentation and with ``unfreeze_from``, it trains on the
    activations below that layer, computed once. Both phases stop early on validation loss
    after ``patience`` epochs without improvement and keep their best epoch; both append to
    one record. Skip a phase with 0 epochs. ``seed`` shuffles ImageData through the network
    (a Dataset shuffles itself). The model comes back compiled. ``verbose``: Keras' progress
    display (1: a progress bar, 2: a line) for each epoch and while images go through the
    frozen part to be stored.

    ``run_dir``: a folder that makes the training resumable. Each phase's fits can be killed
    and resumed from their last finished epoch (``ftutils.training.resumable_callbacks``, in
    ``run_dir/head`` and ``run_dir/fine-tune``; early stopping continues its count and keeps
    the best epoch, also one from before the kill). A finished phase is noted in
    ``run_dir/phases.json`` with its record rows, beside the weights it ended with: the same
    call again skips it, restores them and goes on with the next phase (so after both
    phases, it only restores the result). ``run_dir/fingerprint.json`` records what the training
    depends on (the model's architecture, the data, the arguments, replicas, precision and
    TensorFlow/Keras/NumPy versions): a call that differs in any of them is refused with a
    ``ftutils.errors.ResumeError`` naming what differs, as is a damaged run file.
    """
    record = record if record is not None else TrainingRecord()
    base = models.base_of(model)
    cached = not frozen.augments(model)
    arguments = dict(head_epochs=head_epochs, finetune_epochs=finetune_epochs, head_lr=head_lr,
                     finetune_lr=finetune_lr, unfreeze_from=unfreeze_from,
                     unfreeze_top_n=unfreeze_top_n, optimizer=optimizer, patience=patience,
                     batch_size=batch_size, seed=seed)  # fmt: skip
    run = _run_folder(run_dir, model, train, val, arguments)
    fit_kwargs = {
        "patience": patience,
        "batch_size": batch_size,
        "verbose": verbose,
        "run_dir": run,
    }
    if head_epochs:
        backbones.freeze(base)
        if not _restored(run, "head", model, record, verbose):
            first = len(record.rows)
            _train_part(model, "pool", train, val, head_epochs, head_lr, optimizer, record,
                        "head", cached, fit_kwargs, seed)  # fmt: skip
            _finished(run, "head", model, record.rows[first:])
    if finetune_epochs:
        backbones.unfreeze(base, top_n=unfreeze_top_n, from_layer=unfreeze_from)
        from_images = isinstance(train, ImageData | ImageFiles)
        cut_at = unfreeze_from if from_images and unfreeze_top_n is None else None
        if not _restored(run, "fine-tune", model, record, verbose):
            first = len(record.rows)
            _train_part(model, cut_at, train, val, finetune_epochs, finetune_lr, optimizer,
                        record, "fine-tune", cached and cut_at is not None, fit_kwargs,
                        seed)  # fmt: skip
            _finished(run, "fine-tune", model, record.rows[first:])
    if not model.compiled:  # trained through its parts: ready for evaluate() all the same
        compile_classifier(model, optimizer, finetune_lr if finetune_epochs else head_lr)
    return record


def _train_part(model, at, train, val, epochs, learning_rate, optimizer, record, phase, cached,
                fit_kwargs, seed) -> None:  # fmt: skip
    """Train above the cut ``at`` on activations computed once, or the whole model on images."""
    if cached:
        part = frozen.cut(model, at)
        verbose = fit_kwargs["verbose"]
        (x, y), (x_val, y_val) = (_activations(part.lower, d, verbose) for d in (train, val))
        compile_classifier(part.upper, optimizer, learning_rate)
        frozen.fit_arrays(part.upper, x, y, (x_val, y_val), epochs, record=record, phase=phase,
                          **fit_kwargs)  # fmt: skip
        return
    compile_classifier(model, optimizer, learning_rate)  # recompile: trainable flags changed
    if isinstance(train, ImageData | ImageFiles):
        fit_classifier(model, train, val, epochs, record, phase, seed=seed, **fit_kwargs)
        return
    history = model.fit(
        train,
        validation_data=val,
        epochs=epochs,
        shuffle=False,  # a Dataset shuffles itself, or not
        callbacks=callbacks(fit_kwargs["patience"], run_dir=fit_kwargs["run_dir"], phase=phase),
        verbose=fit_kwargs["verbose"],
    )
    record.add(phase, history)


def _run_folder(run_dir, model, train, val, arguments: dict) -> Path | None:
    """``run_dir`` as a Path, after checking that it was made by this training (or is new,
    then noting in it what this training depends on)."""
    if run_dir is None:
        return None
    run = Path(run_dir)
    current = {
        "model architecture": cache.digest(cache.architecture(model)),
        "training data": _data_fingerprint(train),
        "validation data": _data_fingerprint(val),
        "arguments": arguments,
        **cache.environment(),
        "replicas": distribute.replicas(model),
    }
    path = run / FINGERPRINT_FILE
    if path.is_file():
        differences = cache.changes(_read_json(path, "what the run depends on"), current)
        if differences:
            raise ResumeError(
                f"{run} was made by another training, so this one cannot resume it; what "
                "differs (in the folder -> now):\n  " + "\n  ".join(differences)
                + f"\nGive this training another run_dir, or delete {run} to start it afresh."
            )  # fmt: skip
    elif any((run / name).exists() for name in (PHASES_FILE, "head", "fine-tune")):
        raise ResumeError(
            f"{run} holds a training but no {FINGERPRINT_FILE} saying which one (it was made by "
            f"an earlier ftutils): give this training another run_dir, or delete {run}."
        )
    else:
        text = json.dumps(current, ensure_ascii=False, default=str)
        cache.write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return run


def _data_fingerprint(data: Data) -> str:
    """The key of the images and labels (ImageFiles: of its files' paths, sizes and times);
    a Dataset's content cannot be read without running it: its element spec and length."""
    if isinstance(data, tf.data.Dataset):
        return f"a tf.data.Dataset of {data.element_spec}, {int(data.cardinality())} batches"
    return cache.digest(data)


def _read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ResumeError(
            f"{path} ({what}) is damaged ({exc}): delete {path.parent} to start the training "
            "afresh, or give it another run_dir"
        ) from None


def _phases(run: Path) -> dict:
    """The finished phases noted in a run folder: phase -> its record rows."""
    path = run / PHASES_FILE
    return _read_json(path, "the finished phases") if path.is_file() else {}


def _restored(run: Path | None, phase: str, model, record: TrainingRecord, verbose: int) -> bool:
    """Whether an earlier call with this run folder finished ``phase``; if so, the model gets
    the weights that phase ended with and ``record`` its rows."""
    if run is None or phase not in (finished := _phases(run)):
        return False
    try:
        with np.load(run / phase / END_WEIGHTS) as weights:
            values = [weights[f"arr_{i}"] for i in range(len(weights.files))]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise ResumeError(
            f"{run / phase / END_WEIGHTS} (the weights the {phase} phase ended with) is missing "
            f"or damaged ({type(exc).__name__}: {exc}): delete {run} to start the training "
            "afresh, or give it another run_dir"
        ) from None
    model.set_weights(values)
    record.rows.extend(finished[phase])
    if verbose:
        print(f"{phase}: finished in an earlier run; its weights and record restored from {run}")
    return True


def _finished(run: Path | None, phase: str, model, rows: list[dict]) -> None:
    """Note in the run folder that ``phase`` has finished: its weights first, then its rows."""
    if run is None:
        return
    weights = model.get_weights()
    cache.write_atomically(run / phase / END_WEIGHTS, lambda tmp: np.savez(tmp, *weights))
    phases = {**_phases(run), phase: rows}
    text = json.dumps(phases, ensure_ascii=False)
    cache.write_atomically(run / PHASES_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _activations(lower: keras.Model, data: Data, verbose: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The lower part's output for every example and the labels, in the same order
    (``verbose``: Keras' progress display while images go through the lower part)."""
    if isinstance(data, ImageData | ImageFiles):
        return frozen.activations(lower, data, verbose=verbose), data.labels
    outputs, labels = [], []
    for images, batch_labels in data:  # one pass: a reshuffling dataset keeps pairs together
        # a plain call, on one device: under several replicas predict_on_batch returns every
        # replica's copy of the batch (measured with TF 2.21 / Keras 3.15)
        outputs.append(np.asarray(lower(images, training=False), dtype="float32"))
        labels.append(np.asarray(batch_labels))
    return np.concatenate(outputs), np.concatenate(labels)


#: The default recipe's settings (``bench/fast_path.py`` measures them on the default task).
ENSEMBLE_BACKBONES = ("mobilenet_v2", "mobilenet")
ENSEMBLE_IMAGE_SIZE = 128
ENSEMBLE_HEADS = 5


def feature_ensemble(
    train: ImageData,
    val: ImageData,
    backbone_names: Sequence[str] = ENSEMBLE_BACKBONES,
    image_size: int = ENSEMBLE_IMAGE_SIZE,
    heads: int = ENSEMBLE_HEADS,
    epochs: int = 300,
    patience: int = 15,
    seed: int = 0,
) -> tuple[keras.Model, TrainingRecord]:
    """Feature extraction pushed as far as a small labelled set allows (§2.2, §4.4-§4.5).

    Each frozen base gives its multi-depth features (``frozen.MULTI_DEPTH_LAYERS``); they
    are concatenated and standardized, and ``heads`` dense heads, each from its own random
    start and stopped early on the validation loss, are averaged. Returns one Keras model,
    image -> class probabilities, and the record of every head's training (phases
    ``head 1``, ``head 2``, ...).
    """
    extractors = []
    for name in backbone_names:
        if name not in frozen.MULTI_DEPTH_LAYERS:
            raise ValueError(
                f"no multi-depth layers listed for {name!r}; choose from "
                f"{', '.join(frozen.MULTI_DEPTH_LAYERS)}"
            )
        classifier = models.build_classifier(name, train.n_classes, image_size, dropout=0)
        extractors.append(frozen.multi_depth(classifier, frozen.MULTI_DEPTH_LAYERS[name]))
    x_train, x_val = (
        np.concatenate([frozen.activations(e, d) for e in extractors], axis=1) for d in (train, val)
    )
    record = TrainingRecord()
    trained = []
    for k in range(heads):
        with config.seeded(seed * 1000 + k):  # a different start for each head
            head, record = frozen.train_head(
                x_train, train.labels, x_val, val.labels, train.n_classes, epochs=epochs,
                standardize=True, patience=patience, record=record, phase=f"head {k + 1}",
                name=f"head_{k + 1}",
            )  # fmt: skip
        trained.append(head)
    return _ensemble_model(extractors, trained, image_size), record


def _ensemble_model(extractors, heads, image_size: int) -> keras.Model:
    """Image -> every extractor's features, concatenated -> every head -> their average."""
    image = keras.Input((image_size, image_size, 3), name="image")
    features = [extractor(image) for extractor in extractors]
    if len(features) > 1:
        features = keras.layers.Concatenate(dtype="float32", name="features")(features)
    else:
        features = features[0]
    outputs = [head(features) for head in heads]
    if len(outputs) > 1:
        outputs = keras.layers.Average(dtype="float32", name="average")(outputs)
    else:
        outputs = outputs[0]
    return keras.Model(image, outputs, name="feature_ensemble")
