"""The fine-tuning workflow of §4.4 as two calls a reader can lift into their own code.

:func:`fine_tune` is the article's two steps on one classifier: train the new head with the
base frozen, then unfreeze the top of the base (BatchNormalization kept frozen) at a lower
learning rate. Whatever stays frozen is computed once (``ftutils.frozen``) when nothing is
augmented. :func:`feature_ensemble` is the book's default recipe for a small labelled set:
features from several depths of two frozen bases, several heads averaged, as one Keras model.
"""

from __future__ import annotations

import dataclasses
import json
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from ftutils import backbones, cache, config, distribute, frozen, models, semi_supervised, training
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
    head_lr: float | keras.optimizers.schedules.LearningRateSchedule = 1e-3,
    finetune_lr: float | keras.optimizers.schedules.LearningRateSchedule = 1e-4,
    unfreeze_from: str | None = None,
    unfreeze_top_n: int | None = None,
    optimizer: str | keras.optimizers.Optimizer = "adam",
    patience: int | None = 3,
    batch_size: int = 32,
    seed: int = 0,
    record: TrainingRecord | None = None,
    verbose: int = 0,
    run_dir: str | Path | None = None,
    loss: str | keras.losses.Loss = "sparse_categorical_crossentropy",
    cache_features: bool | None = None,
    memory_budget: int | None = frozen.MEMORY_BUDGET_BYTES,
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

    ``cache_features``: whether the frozen part's outputs may be computed once and reused
    every epoch, which is only right when the training inputs are the same every epoch.
    ``None`` (ImageData): yes unless the model augments its inputs (a layer named
    "augmentation"). A ``tf.data.Dataset`` must say: ``False`` when its pipeline is random
    (e.g. ``ds.map(random_flip)``: every epoch then goes through the whole network, so each
    sees new draws), ``True`` when it is not; ftutils cannot tell from the dataset.
    ``memory_budget`` (bytes; ``None``: no limit): stored activations larger than this
    (phase 2 from ImageData) go to a disk-backed array in the ftutils cache folder, computed
    in batches of ``batch_size``, and are read batch by batch: the same training, to float
    rounding, with the memory of a batch (``frozen.activations``).

    ``loss``: any Keras loss, e.g. ``"categorical_crossentropy"`` for one-hot labels from a
    Dataset (ImageData's labels are integers: keep the default). ``optimizer``: a name of
    ``ftutils.training.OPTIMIZERS`` or a Keras optimizer object, copied for each phase with
    that phase's learning rate in place of its own (``head_lr``, ``finetune_lr``: numbers or
    ``keras.optimizers.schedules.LearningRateSchedule`` objects). With several replicas, a
    Dataset's batches are cut to a multiple of them (``ftutils.distribute.even_batches``).

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
    cached = _caches(model, train, cache_features)
    arguments = dict(head_epochs=head_epochs, finetune_epochs=finetune_epochs,
                     head_lr=_recorded(head_lr), finetune_lr=_recorded(finetune_lr),
                     unfreeze_from=unfreeze_from, unfreeze_top_n=unfreeze_top_n,
                     optimizer=_recorded(optimizer), patience=patience, batch_size=batch_size,
                     seed=seed, loss=_recorded(loss), cache_features=cached)  # fmt: skip
    run = _run_folder(run_dir, model, train, val, arguments)
    fit_kwargs = {
        "patience": patience,
        "batch_size": batch_size,
        "verbose": verbose,
        "run_dir": run,
        "loss": loss,
        "memory_budget": memory_budget,
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
        compile_classifier(model, optimizer, finetune_lr if finetune_epochs else head_lr, loss)
    return record


def _recorded(argument):
    """An argument as the run folder records it: a name or number as it is, an object (an
    optimizer, a schedule, a loss) by the key of its class, config and state."""
    return (
        argument
        if argument is None or isinstance(argument, str | int | float)
        else cache.key(argument)
    )


def _caches(model: keras.Model, train: Data, cache_features: bool | None) -> bool:
    """Whether the frozen part's outputs may be computed once (see ``fine_tune``)."""
    if cache_features is None and isinstance(train, tf.data.Dataset):
        raise ValueError(
            "fine_tune cannot tell whether a tf.data pipeline is random (augmentation in "
            "ds.map(...)): pass cache_features=False if it is (every epoch then goes through "
            "the network), cache_features=True if its batches are the same every epoch"
        )
    if cache_features and frozen.augments(model):
        raise ValueError(
            "the model augments its inputs (its 'augmentation' layer), so the frozen part's "
            "outputs change every epoch: pass cache_features=False (or None), or build the "
            "classifier with augmentation=None"
        )
    return not frozen.augments(model) if cache_features is None else cache_features


def _train_part(model, at, train, val, epochs, learning_rate, optimizer, record, phase, cached,
                fit_kwargs, seed) -> None:  # fmt: skip
    """Train above the cut ``at`` on activations computed once, or the whole model on images."""
    fit_kwargs = dict(fit_kwargs)
    loss, budget = fit_kwargs.pop("loss"), fit_kwargs.pop("memory_budget")
    if cached:
        part = frozen.cut(model, at)
        verbose = fit_kwargs["verbose"]
        (x, y), (x_val, y_val) = (
            _activations(part.lower, d, verbose, budget, fit_kwargs["batch_size"])
            for d in (train, val)
        )
        compile_classifier(part.upper, optimizer, learning_rate, loss)
        frozen.fit_arrays(part.upper, x, y, (x_val, y_val), epochs, record=record, phase=phase,
                          **fit_kwargs)  # fmt: skip
        return
    compile_classifier(model, optimizer, learning_rate, loss)  # trainable flags changed
    if isinstance(train, ImageData | ImageFiles):
        fit_classifier(model, train, val, epochs, record, phase, seed=seed, **fit_kwargs)
        return
    history = model.fit(
        distribute.even_batches(train, model),
        validation_data=distribute.even_batches(val, model),
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


def _activations(
    lower: keras.Model,
    data: Data,
    verbose: int = 0,
    memory_budget: int | None = None,
    batch_size: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """The lower part's output for every example and the labels, in the same order
    (``verbose``: Keras' progress display while images go through the lower part). Over
    ``memory_budget`` bytes, ImageData's are memory-mapped from disk (``frozen.activations``)
    and computed in batches of the training's ``batch_size``: that pass's memory grows with
    its batch too (``frozen.activations`` otherwise takes 64)."""
    if isinstance(data, ImageData | ImageFiles):
        over = memory_budget is not None and (
            frozen.activation_bytes(lower, len(data)) > memory_budget
        )
        batch = {"batch_size": batch_size} if over else {}
        values = frozen.activations(lower, data, verbose=verbose, memory_budget=memory_budget,
                                    **batch)  # fmt: skip
        return values, data.labels
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
    extractors = _ensemble_extractors(train.n_classes, backbone_names, image_size)
    x_train, x_val = (_features(extractors, d) for d in (train, val))
    trained, record = _ensemble_heads(x_train, train.labels, x_val, val.labels, train.n_classes,
                                      heads, epochs, patience, seed)  # fmt: skip
    return _ensemble_model(extractors, trained, image_size), record


def _ensemble_extractors(n_classes: int, backbone_names: Sequence[str], image_size: int) -> list:
    """One multi-depth feature extractor per base (``frozen.multi_depth``)."""
    extractors = []
    for name in backbone_names:
        if name not in frozen.MULTI_DEPTH_LAYERS:
            raise ValueError(
                f"no multi-depth layers listed for {name!r}; choose from "
                f"{', '.join(frozen.MULTI_DEPTH_LAYERS)}"
            )
        classifier = models.build_classifier(name, n_classes, image_size, dropout=0)
        extractors.append(frozen.multi_depth(classifier, frozen.MULTI_DEPTH_LAYERS[name]))
    return extractors


def _features(extractors: Sequence[keras.Model], data: Data) -> np.ndarray:
    """Every extractor's features of ``data``, side by side."""
    return np.concatenate([frozen.activations(e, data) for e in extractors], axis=1)


def _ensemble_heads(x_train, y_train, x_val, y_val, n_classes: int, heads: int, epochs: int,
                    patience: int, seed: int, record: TrainingRecord | None = None
                    ) -> tuple[list[keras.Model], TrainingRecord]:  # fmt: skip
    """``heads`` standardized dense heads, each from its own seeded start, stopped early on
    the validation loss."""
    record = record if record is not None else TrainingRecord()
    trained = []
    for k in range(heads):
        with config.seeded(seed * 1000 + k):  # a different start for each head
            head, record = frozen.train_head(
                x_train, y_train, x_val, y_val, n_classes, epochs=epochs,
                standardize=True, patience=patience, record=record, phase=f"head {k + 1}",
                name=f"head_{k + 1}",
            )  # fmt: skip
        trained.append(head)
    return trained, record


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


# --- Choosing a recipe on validation (what ``python -m ftutils finetune`` runs) -------------

#: In ``auto``'s run folder, per candidate (``run_dir/<name>/``): its model and its result.
CANDIDATE_MODEL = "model.keras"
CANDIDATE_RESULT = "result.json"
#: ``auto``'s run folder: the self-training's result, model and record.
SELF_TRAINING_DIR = "self-training"


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A recipe :func:`auto` may choose: ``train(train, val, work_dir)`` returns a model
    (image -> class probabilities) and its training record; ``work_dir`` (a folder, or None)
    is where it may keep a resumable state."""

    name: str
    about: str
    train: Callable[[Data, Data, Path | None], tuple[keras.Model, TrainingRecord]]


@dataclasses.dataclass
class Tried:
    """One candidate as :func:`auto` met it."""

    name: str
    about: str
    status: str = "skipped"  # "chosen", "not chosen" or "skipped"
    why: str = ""
    val_accuracy: float | None = None
    seconds: float | None = None  # its training and validation (an earlier run's, if resumed)
    resumed: bool = False


@dataclasses.dataclass
class Choice:
    """What :func:`auto` tried and chose: every candidate, the chosen one's training record,
    the validation set's size, and the self-training (None without unlabelled images)."""

    tried: list[Tried]
    record: TrainingRecord
    val_size: int
    self_training: semi_supervised.SelfTraining | None = None

    @property
    def chosen(self) -> Tried:
        return next(t for t in self.tried if t.status == "chosen")


def ensemble_candidate(
    n_classes: int,
    seed: int = 0,
    backbone_names: Sequence[str] = ENSEMBLE_BACKBONES,
    image_size: int = ENSEMBLE_IMAGE_SIZE,
    heads: int = ENSEMBLE_HEADS,
    epochs: int = 300,
    patience: int = 15,
) -> Candidate:
    """:func:`feature_ensemble` as a candidate (its features are cached: resumable as such)."""

    def train(train_data, val_data, work_dir):
        return feature_ensemble(train_data, val_data, backbone_names, image_size, heads, epochs,
                                patience, seed)  # fmt: skip

    about = (f"feature ensemble: multi-depth features of {' + '.join(backbone_names)} at "
             f"{image_size} px (frozen), {heads} standardized heads averaged")  # fmt: skip
    return Candidate("ensemble", about, train)


def finetune_candidate(
    n_classes: int,
    backbone: str = "mobilenet_v2",
    image_size: int = ENSEMBLE_IMAGE_SIZE,
    **kwargs,
) -> Candidate:
    """:func:`fine_tune`'s two phases on a new :func:`ftutils.models.build_classifier` model
    (``kwargs``: fine_tune's arguments; ``unfreeze_from`` defaults to the base's top block),
    resumable in its work folder."""
    kwargs.setdefault("unfreeze_from", TOP_BLOCK[backbone])

    def train(train_data, val_data, work_dir):
        model = models.build_classifier(backbone, n_classes, image_size)
        record = fine_tune(model, train_data, val_data, run_dir=work_dir, **kwargs)
        return model, record

    about = (
        f"two-phase fine-tune: {backbone} at {image_size} px, a new head on the frozen "
        f"base, then the base from {kwargs['unfreeze_from']} up (BatchNormalization frozen)"
    )
    return Candidate("finetune", about, train)  # fmt: skip


def auto(
    train: Data,
    val: Data,
    unlabelled: ImageData | ImageFiles | None = None,
    candidates: Sequence[Candidate] | None = None,
    budget_s: float | None = None,
    run_dir: str | Path | None = None,
    seed: int = 0,
    rounds: int = 2,
    thresholds: Sequence[float] = semi_supervised.THRESHOLDS,
    self_training_heads: int = ENSEMBLE_HEADS,
    self_training_epochs: int = 300,
    clock: Callable[[], float] = time.perf_counter,
    log: Callable[[str], None] = lambda line: None,
) -> tuple[keras.Model, Choice]:
    """Train the candidates in order (the book's default recipe first) and keep the best on
    validation.

    ``candidates`` (default: :func:`ensemble_candidate`, then :func:`finetune_candidate`,
    the two the book measures on its default task) are trained on ``train`` and scored on
    ``val`` (accuracy); the highest score is chosen, a tie going to the one tried first.
    Nothing else is looked at: a test set never reaches this function. ``budget_s``: once
    the candidates trained so far took this many seconds, the later ones are skipped
    (the first always runs). ``run_dir``: each finished candidate's model and result are kept
    in ``run_dir/<name>/`` and the same call again reuses them instead of training (an
    interrupted candidate resumes where its recipe can: ``fine_tune``'s phases, the
    ensemble's cached features); seconds are those of the run that trained it.

    ``unlabelled`` (images whose labels are not used; ``labels`` may be -1, or the true
    classes, which then only check the pseudo-labels): self-training (§4.5) on top of the
    chosen model: ``self_training_heads`` new standardized heads on its features (each at
    most ``self_training_epochs`` epochs, stopped early on the validation loss), refitted
    with pseudo-labels for ``rounds`` rounds at each of ``thresholds``, the threshold chosen
    on validation, kept only when it beats the chosen model there
    (:func:`ftutils.semi_supervised.self_train_on_validation`). The returned model is then
    image -> the chosen model's features -> the new heads, averaged.

    Returns the model (one Keras model of standard layers, image -> probabilities) and the
    :class:`Choice`. ``log`` receives a line per event (the CLI prints them).
    """
    if candidates is None:
        candidates = [ensemble_candidate(train.n_classes, seed),
                      finetune_candidate(train.n_classes, seed=seed)]  # fmt: skip
    if not candidates:
        raise ValueError("give at least one candidate")
    names = [c.name for c in candidates]
    if len(set(names)) != len(names):
        raise ValueError(f"candidate names must differ, got {names}")
    run = Path(run_dir) if run_dir is not None else None
    tried = [Tried(c.name, c.about) for c in candidates]
    models_, records = {}, {}
    spent = 0.0
    for k, (candidate, entry) in enumerate(zip(candidates, tried, strict=True)):
        if k and budget_s is not None and spent >= budget_s:
            entry.why = (f"skipped: the candidates before it took {spent:.0f} s, the budget "
                         f"(--budget-s) is {budget_s:g} s")  # fmt: skip
            log(f"{candidate.name}: {entry.why}")
            continue
        found = _finished_candidate(run, candidate.name)
        if found is not None:
            models_[candidate.name], records[candidate.name], result = found
            entry.val_accuracy, entry.seconds = result["val_accuracy"], result["seconds"]
            entry.resumed = True
            log(
                f"{candidate.name}: finished in an earlier run (validation accuracy "
                f"{entry.val_accuracy:.3f}, {entry.seconds:.0f} s); restored from {run}"
            )
        else:
            log(f"{candidate.name}: training ({candidate.about})")
            work = run / candidate.name if run is not None else None
            start = clock()
            model, record = candidate.train(train, val, work)
            entry.val_accuracy = training.accuracy(model, val)
            entry.seconds = clock() - start
            models_[candidate.name], records[candidate.name] = model, record
            _keep_candidate(run, candidate.name, model, record, entry)
            log(f"{candidate.name}: validation accuracy {entry.val_accuracy:.3f} "
                f"({entry.seconds:.0f} s)")  # fmt: skip
        spent += entry.seconds
    scored = [t for t in tried if t.val_accuracy is not None]
    best = max(scored, key=lambda t: t.val_accuracy)  # the first of equals: tried first
    n = _size(val)
    for entry in scored:
        if entry is best:
            entry.status = "chosen"
            others = [t for t in scored if t is not best]
            entry.why = (
                "the highest validation accuracy"
                + (f" ({best.val_accuracy:.3f} against "
                   + ", ".join(f"{t.name} {t.val_accuracy:.3f}" for t in others) + ")"
                   if others else " (the only candidate trained)")
                + f" on {n} validation images"
            )  # fmt: skip
            if any(t.val_accuracy == best.val_accuracy for t in others):
                entry.why += "; a tie goes to the candidate tried first"
        else:
            entry.status = "not chosen"
            entry.why = (f"validation accuracy {entry.val_accuracy:.3f}, below "
                         f"{best.name}'s {best.val_accuracy:.3f}")  # fmt: skip
            if entry.val_accuracy == best.val_accuracy:
                entry.why = f"validation accuracy tied with {best.name}, which was tried first"
    choice = Choice(tried, records[best.name], n)
    model = models_[best.name]
    if unlabelled is not None:
        model, choice.self_training = _self_train(
            model, train, val, unlabelled, run, seed, rounds, tuple(thresholds),
            self_training_heads, self_training_epochs, log,
        )  # fmt: skip
    return model, choice


def _size(data: Data) -> int:
    return len(data) if not isinstance(data, tf.data.Dataset) else int(data.cardinality())


def _finished_candidate(run: Path | None, name: str):
    """An earlier run's model, record and result of candidate ``name``, or None."""
    if run is None or not (run / name / CANDIDATE_RESULT).is_file():
        return None
    result = _read_json(run / name / CANDIDATE_RESULT, f"the {name} candidate's result")
    try:
        model = keras.saving.load_model(run / name / CANDIDATE_MODEL, compile=False)
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise ResumeError(
            f"{run / name / CANDIDATE_MODEL} (the {name} candidate's model) is missing or "
            f"damaged ({type(exc).__name__}): delete {run / name} to train it again"
        ) from None
    record = TrainingRecord()
    record.rows.extend(result["rows"])
    return model, record, result


def _keep_candidate(run: Path | None, name: str, model, record, entry: Tried) -> None:
    """The finished candidate's model, then its result (the mark that it finished)."""
    if run is None:
        return
    cache.write_atomically(run / name / CANDIDATE_MODEL, model.save)
    result = {"val_accuracy": entry.val_accuracy, "seconds": entry.seconds, "rows": record.rows}
    text = json.dumps(result, ensure_ascii=False, default=float)
    cache.write_atomically(run / name / CANDIDATE_RESULT,
                           lambda tmp: tmp.write_text(text, encoding="utf-8"))  # fmt: skip


def feature_model(model: keras.Model) -> tuple[keras.Model, keras.Model]:
    """``model`` split where its heads start: image -> features, and features ->
    probabilities. The features are the ensemble's concatenated multi-depth features (its
    ``features`` layer) or a classifier's pooled base features (its global pooling layer)."""
    names = [layer.name for layer in model.layers]
    if "features" in names:
        layer = model.get_layer("features")
    else:
        pooling = (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D)
        found = [layer for layer in model.layers if isinstance(layer, pooling)]
        if not found:
            raise ValueError(f"{model.name} has neither a 'features' layer nor global pooling")
        layer = found[-1]
    lower = keras.Model(model.inputs, layer.output, name="features_of_" + model.name)
    upper = keras.Model(layer.output, model.output, name="heads_of_" + model.name)
    return lower, upper


def _self_train(model, train, val, unlabelled, run, seed, rounds, thresholds, heads, epochs, log):
    """:func:`auto`'s self-training on top of the chosen ``model`` (see there)."""
    done = run / SELF_TRAINING_DIR if run is not None else None
    if done is not None and (done / CANDIDATE_RESULT).is_file():
        result = _read_json(done / CANDIDATE_RESULT, "the self-training's result")
        record = semi_supervised.SelfTraining(
            [semi_supervised.Round(**r) for r in result["rounds"]], result["val_before"],
            result["val_after"], result["threshold"], result["kept"],
        )  # fmt: skip
        log(f"self-training: finished in an earlier run ({record.why})")
        if record.kept:
            model = keras.saving.load_model(done / CANDIDATE_MODEL, compile=False)
        return model, record
    lower, upper = feature_model(model)
    log(f"self-training: features of {len(unlabelled)} unlabelled images")
    x_l, x_v, x_u = (frozen.activations(lower, d) for d in (train, val, unlabelled))
    n_classes = train.n_classes
    fitted = {}

    def fit(x, y):
        trained, _ = _ensemble_heads(x, y, x_v, val.labels, n_classes, heads, epochs, 15, seed)
        predict = _averaged(trained)
        fitted[id(predict)] = trained
        return predict

    def first(z):
        return np.asarray(upper.predict(z, batch_size=256, verbose=0))

    step = max(1, int(np.ceil(len(x_u) / n_classes / (2 * rounds))))
    truth = np.asarray(unlabelled.labels)
    predict, record = semi_supervised.self_train_on_validation(
        fit, first, x_l, train.labels, x_v, val.labels, x_u, rounds, step, thresholds,
        y_unlabeled=truth if (truth >= 0).any() else None,
    )  # fmt: skip
    log(f"self-training: {record.why}")
    if record.kept:
        model = _ensemble_model([lower], fitted[id(predict)], model.input_shape[1])
    if done is not None:
        if record.kept:
            cache.write_atomically(done / CANDIDATE_MODEL, model.save)
        result = dataclasses.asdict(record)
        text = json.dumps(result, ensure_ascii=False, default=float)
        cache.write_atomically(done / CANDIDATE_RESULT,
                               lambda tmp: tmp.write_text(text, encoding="utf-8"))  # fmt: skip
    return model, record


def _averaged(heads: Sequence[keras.Model]) -> Callable[[np.ndarray], np.ndarray]:
    def predict(x):
        return np.mean([np.asarray(h.predict(x, batch_size=256, verbose=0)) for h in heads], 0)

    return predict
