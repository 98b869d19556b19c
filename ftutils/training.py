"""Compile, fit, evaluate and record a classifier's training (§3.2-§3.3, §4.4).

Every phase of a training (the head, then the fine-tune: ``ftutils.recipe.fine_tune``)
appends to one :class:`TrainingRecord`, so their curves share a time axis. Given a run
folder, a fit can be killed and resumed from its last finished epoch
(:func:`resumable_callbacks`).
"""

from __future__ import annotations

import dataclasses
import json
import time
import zipfile
from pathlib import Path

import h5py
import keras
import numpy as np

from ftutils import cache, distribute
from ftutils.config import seeded
from ftutils.data import ImageData, ImageFiles, check_labels, make_dataset
from ftutils.errors import ResumeError

OPTIMIZERS = {
    "sgd": lambda lr: keras.optimizers.SGD(lr),
    "momentum": lambda lr: keras.optimizers.SGD(lr, momentum=0.9),
    "adagrad": lambda lr: keras.optimizers.Adagrad(lr),
    "rmsprop": lambda lr: keras.optimizers.RMSprop(lr),
    "adam": lambda lr: keras.optimizers.Adam(lr),
}


@dataclasses.dataclass
class TrainingRecord:
    """Per-epoch metrics of every training phase, in order."""

    rows: list[dict] = dataclasses.field(default_factory=list)

    def add(self, phase: str, history: keras.callbacks.History, validation_freq: int = 1) -> None:
        """Append a ``fit``'s epochs; with ``validation_freq`` k, validation metrics exist for
        every k-th epoch only (as Keras validates) and are NaN on the others.

        Keras counts those epochs from the first epoch of the training, not of this ``fit``
        call: a fit resumed at epoch 3 (``initial_epoch=2`` or a backup) with k = 2
        validates its 2nd, 4th... epochs. ``history.epoch`` holds those numbers.
        """
        metrics = history.history
        epochs = len(metrics.get("loss", next(iter(metrics.values()), [])))
        numbers = getattr(history, "epoch", None) or range(epochs)
        validated = [i for i, epoch in enumerate(numbers) if (epoch + 1) % validation_freq == 0]
        for name, values in metrics.items():
            if len(values) not in (epochs, len(validated)):
                raise ValueError(
                    f"{name} has {len(values)} values for {epochs} epochs: pass the fit's "
                    "validation_freq to TrainingRecord.add"
                )
        rows = [{"epoch": len(self.rows) + i + 1, "phase": phase} for i in range(epochs)]
        for name, values in metrics.items():
            at = range(epochs) if len(values) == epochs else validated
            for row in rows:
                row[name] = np.nan
            for i, value in zip(at, values, strict=True):
                rows[i][name] = float(value)
        self.rows.extend(rows)

    def series(self, metric: str) -> np.ndarray:
        return np.array([row.get(metric, np.nan) for row in self.rows])

    def phases(self) -> list[tuple[str, int, int]]:
        """(phase, first epoch, last epoch) for each phase."""
        spans: list[tuple[str, int, int]] = []
        for row in self.rows:
            if spans and spans[-1][0] == row["phase"]:
                spans[-1] = (row["phase"], spans[-1][1], row["epoch"])
            else:
                spans.append((row["phase"], row["epoch"], row["epoch"]))
        return spans


def make_optimizer(
    optimizer: str | keras.optimizers.Optimizer,
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule,
) -> keras.optimizers.Optimizer:
    """A new optimizer: by name, one of ``sgd``, ``momentum`` (SGD, beta 0.9), ``adagrad``,
    ``rmsprop``, ``adam``; or a copy of a Keras optimizer object (its class and settings,
    such as momentum or weight decay) with ``learning_rate`` in place of its own.

    ``learning_rate``: a number, or a ``keras.optimizers.schedules.LearningRateSchedule``.
    """
    if isinstance(optimizer, keras.optimizers.Optimizer):
        settings = {**optimizer.get_config(), "learning_rate": learning_rate}
        return type(optimizer).from_config(settings)
    if optimizer not in OPTIMIZERS:
        raise ValueError(
            f"unknown optimizer {optimizer!r}; choose from {', '.join(OPTIMIZERS)}, or pass a "
            "keras.optimizers.Optimizer"
        )
    return OPTIMIZERS[optimizer](learning_rate)


def compile_classifier(
    model: keras.Model,
    optimizer: str | keras.optimizers.Optimizer = "adam",
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = 1e-3,
    loss: str | keras.losses.Loss = "sparse_categorical_crossentropy",
) -> None:
    """Compile with ``loss`` (by default sparse categorical cross-entropy: integer labels)
    and accuracy, under the model's own strategy.

    ``optimizer`` and ``learning_rate``: see :func:`make_optimizer` (an optimizer object is
    copied). Accuracy matches the loss: sparse for a loss named ``sparse...``, categorical
    (one-hot labels) for another ``...categorical...`` one, else Keras' choice from the
    labels' shape. The optimizer is created in the scope of the strategy the model was
    built under (a Keras 3 optimizer can build its variables only there). Metrics go by
    keyword: in Keras 3 a third positional argument is ``loss_weights``.

    Compile after setting which layers train: the optimizer's and the metric's variables are
    made here, for the weights trainable now. Made later, inside the first traced training
    step (Keras does so without a distribution strategy), they make TensorFlow trace that
    step twice, which for MobileNetV2 doubles a fit's start-up (docs/traps.md).
    """
    with distribute.scope_of(model):
        model.compile(
            optimizer=make_optimizer(optimizer, learning_rate),
            loss=loss,
            metrics=[_accuracy_for(loss)],
        )
        model.optimizer.build(model.trainable_variables)
    distribute.adapt_for_multiworker(model)


def _accuracy_for(loss) -> keras.metrics.Metric | str:
    """The accuracy metric (logged as ``accuracy``) for labels of the kind ``loss`` takes."""
    name = loss if isinstance(loss, str) else getattr(loss, "name", getattr(loss, "__name__", ""))
    if "sparse" in name:
        return keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    if "categorical" in name:
        return keras.metrics.CategoricalAccuracy(name="accuracy")
    return "accuracy"


def callbacks(
    patience: int | None = None,
    checkpoint: str | Path | None = None,
    run_dir: str | Path | None = None,
    phase: str = "train",
) -> list:
    """Early stopping on validation loss (best weights restored) and a best-model checkpoint.

    With ``run_dir``, the fit can also be killed and resumed: :func:`resumable_callbacks`
    in ``run_dir/<phase>``.
    """
    if run_dir is not None:
        return resumable_callbacks(Path(run_dir) / phase, patience, checkpoint)
    result: list[keras.callbacks.Callback] = []
    if patience is not None:
        result.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=patience, restore_best_weights=True
            )
        )
    if checkpoint is not None:
        Path(checkpoint).parent.mkdir(parents=True, exist_ok=True)
        result.append(
            keras.callbacks.ModelCheckpoint(
                str(checkpoint), monitor="val_loss", save_best_only=True
            )
        )
    return result


#: What a run folder keeps for one phase of a training (``run_dir/<phase>/``).
BACKUP_DIR = "backup"  # Keras' BackupAndRestore: weights, optimizer and epoch; gone at the end
EPOCH_LOG = "epochs.json"  # every finished epoch's logs (loss, accuracy, val_loss, ...)
BEST_WEIGHTS = "best.weights.h5"  # the epoch with the lowest validation loss so far


def resumable_callbacks(
    phase_dir: str | Path,
    patience: int | None = None,
    checkpoint: str | Path | None = None,
) -> list[keras.callbacks.Callback]:
    """:func:`callbacks` for a fit that a restart with the same ``phase_dir`` resumes (§4.4).

    After every epoch ``phase_dir`` gets Keras' ``BackupAndRestore`` backup (``backup/``,
    deleted when the fit ends), that epoch's logs (``epochs.json``) and, when its validation
    loss is the lowest so far, its weights (``best.weights.h5``); both files are written to a
    temporary name and renamed, so a kill never leaves half of one. A fit restarted after a
    kill continues after the last backed-up epoch, so at most the epoch that was running is
    lost; its History (and so its :class:`TrainingRecord`) starts with the logged epochs
    before the interruption. A log or best-weights file found damaged then (by a full disk,
    or a copy cut short) stops the fit with a ``ftutils.errors.ResumeError`` that names it.

    Early stopping after a resume behaves as if the fit had never stopped: EarlyStopping's
    state is not in Keras' backup, so it is replayed from the logged validation losses
    (patience counts from the best epoch before the interruption), and when that epoch is
    still the best at the end, its weights are loaded from ``best.weights.h5``. The order in
    which the training images are shuffled restarts with the process, so a resumed fit is
    close to, not identical with, an uninterrupted one. A finished fit leaves no backup: the
    same call again trains from the start.
    """
    phase_dir = Path(phase_dir)
    best = _ResumedCheckpoint(phase_dir / BEST_WEIGHTS, weights_only=True)
    extra = [_ResumedCheckpoint(Path(checkpoint), weights_only=False)] if checkpoint else []
    stopping = [] if patience is None else [_ResumedEarlyStopping(patience, best.filepath)]
    history = _LoggedHistory(phase_dir / EPOCH_LOG, resumed=[best, *extra, *stopping])
    # Order matters within each epoch's end: the log is written first and the backup last, so
    # a kill in between leaves a log that is ahead of the backup (and trimmed), never behind.
    return [history, best, *extra, *stopping, _Backup(phase_dir / BACKUP_DIR)]


def _best_epoch(past: list[dict]) -> tuple[int | None, float | None, int]:
    """(index, value, epochs without improvement since) of the lowest ``val_loss`` in
    ``past``, counted as ``keras.callbacks.EarlyStopping`` counts (epochs without one skipped)."""
    index, best, wait = None, None, 0
    for i, logs in enumerate(past):
        value = logs.get("val_loss")
        if value is None:
            continue
        wait += 1
        if best is None or value < best:
            index, best, wait = i, value, 0
    return index, best, wait


class _LoggedHistory(keras.callbacks.History):
    """The fit's History, also written to a file after every epoch; a resumed fit's History
    starts with the logged epochs before the interruption, and the ``resumed`` callbacks are
    told about them (``resume(past)``) before its first epoch."""

    def __init__(self, path: Path, resumed: list):
        super().__init__()
        self.path, self.resumed = path, resumed

    def on_train_begin(self, logs: dict | None = None) -> None:
        super().on_train_begin(logs)
        self.history, self.rows, self.started = {}, [], False
        self.model.history = self  # what fit returns, also when a resume leaves no epoch to run

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if not self.started:
            self._resume(epoch)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        super().on_epoch_end(epoch, logs)
        self.rows = [*self.rows[:epoch], dict(logs or {})]
        cache.write_atomically(self.path, lambda tmp: tmp.write_text(json.dumps(self.rows)))

    def on_train_end(self, logs: dict | None = None) -> None:
        if not self.started:  # killed after the last epoch's backup: nothing was left to run
            self._resume(None)

    def _resume(self, epoch: int | None) -> None:
        """Take the logged epochs before ``epoch`` (all of them for None) as this fit's own."""
        self.started = True
        logged = _read_log(self.path)
        self.rows = logged if epoch is None else logged[:epoch]  # a fresh fit: epoch 0, none
        for i, past in enumerate(self.rows):
            super().on_epoch_end(i, past)
        for callback in self.resumed:
            callback.resume(self.rows)


class _ResumedCheckpoint(keras.callbacks.Callback):
    """Saves the epoch of lowest validation loss, as ``ModelCheckpoint(save_best_only=True)``
    does but to a temporary name then renamed (a kill never leaves half a file); after a
    resume, only an epoch better than the best one before the interruption, whose file must
    then be whole."""

    def __init__(self, path: Path, weights_only: bool):
        super().__init__()
        self.path, self.weights_only, self.best = path, weights_only, None
        self.filepath = str(path)

    def resume(self, past: list[dict]) -> None:
        index, self.best, _ = _best_epoch(past)
        if index is not None:
            _check_whole(self.path, f"epoch {index + 1}'s weights, the best before the resume")

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("val_loss")
        if loss is not None and self.best is not None and not loss < self.best:
            return
        if loss is not None:
            self.best = loss
        save = self.model.save_weights if self.weights_only else self.model.save
        cache.write_atomically(self.path, lambda temporary: save(str(temporary)))


def _check_whole(path: Path, what: str) -> None:
    """Raise a ResumeError unless ``path`` (a ``.weights.h5`` or ``.keras`` file) is there and
    every part of it can be read."""
    try:
        if path.suffix == ".keras":
            with zipfile.ZipFile(path) as archive:
                broken = archive.testzip()
                if broken is not None:
                    raise ValueError(f"{broken} is damaged")
        else:
            with h5py.File(path, "r") as weights:
                weights.visititems(lambda _, item: _read(item))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise ResumeError(
            f"cannot resume from {path.parent}: {path.name} ({what}) is missing or damaged "
            f"({type(exc).__name__}: {exc}). Delete {path.parent} to train this phase again "
            "from its start, or give the training another run folder."
        ) from None


def _read(item) -> None:
    if isinstance(item, h5py.Dataset):
        item[()]


def _read_log(path: Path) -> list[dict]:
    """The epochs logged in ``path`` (none when there is no file yet)."""
    if not path.is_file():
        return []
    try:
        logged = json.loads(path.read_text())
        if not isinstance(logged, list) or not all(isinstance(row, dict) for row in logged):
            raise ValueError("not a list of epochs' logs")
    except ValueError as exc:
        raise ResumeError(
            f"cannot resume from {path.parent}: {path.name} (the logs of its epochs) is damaged "
            f"({exc}). Delete {path.parent} to train this phase again from its start, or give "
            "the training another run folder."
        ) from None
    return logged


class _ResumedEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping (best weights restored) that continues the count of an interrupted fit.

    Its best epoch may lie before the interruption: its weights are then in ``best_file``
    (see :func:`resumable_callbacks`) rather than in memory, and are loaded at the end.
    """

    ON_DISK = object()  # in place of best weights that are in best_file

    def __init__(self, patience: int, best_file: str):
        super().__init__(monitor="val_loss", patience=patience, restore_best_weights=True)
        self.best_file = best_file

    def resume(self, past: list[dict]) -> None:
        index, best, wait = _best_epoch(past)
        if index is not None:
            self.best, self.best_epoch, self.wait = best, index, wait
            self.best_weights = self.ON_DISK

    def on_train_end(self, logs: dict | None = None) -> None:
        on_disk = self.best_weights is self.ON_DISK
        if on_disk:
            self.best_weights = None
        super().on_train_end(logs)
        if on_disk:
            self.model.load_weights(self.best_file)


class _Backup(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore, keeping the previous epoch's backup too (a kill while one is
    written leaves the other whole), and forgetting the resumed epoch at the end: Keras 3.15
    leaves it in ``model._initial_epoch``, so the model's next fit would skip as many epochs."""

    def __init__(self, backup_dir: Path):
        super().__init__(str(backup_dir), double_checkpoint=True)

    def on_train_end(self, logs: dict | None = None) -> None:
        super().on_train_end(logs)
        self.model._initial_epoch = None


def fit_classifier(
    model: keras.Model,
    train: ImageData | ImageFiles,
    val: ImageData | ImageFiles,
    epochs: int,
    record: TrainingRecord | None = None,
    phase: str = "train",
    batch_size: int = 32,
    seed: int = 0,
    patience: int | None = None,
    checkpoint: str | Path | None = None,
    verbose: int = 2,
    run_dir: str | Path | None = None,
) -> TrainingRecord:
    """Fit an already compiled classifier on ImageData (or ImageFiles, read from disk in every
    epoch); append the epochs to ``record``.

    ``batch_size`` is per replica: with several replicas (GPUs, workers) each step
    consumes ``batch_size`` images on each, and this prints the global batch; each pass
    then leaves out fewer images than there are replicas (``make_dataset``'s ``multiple_of``).
    ``run_dir``: a folder that makes the fit resumable after a kill, in ``run_dir/<phase>``
    (:func:`resumable_callbacks`: the backup, the epochs' logs, the best epoch's weights).
    """
    size = model.input_shape[1]
    n_classes = model.output_shape[-1]
    check_labels(train, n_classes)
    check_labels(val, n_classes)
    record = record if record is not None else TrainingRecord()
    replicas = distribute.replicas(model)
    batch = distribute.global_batch(batch_size, model)
    if verbose and replicas > 1:
        print(f"batch: {batch_size} per replica x {replicas} replicas = {batch}")
    with distribute.explain_determinism_errors():
        history = model.fit(
            make_dataset(train, size, batch, shuffle=True, seed=seed, multiple_of=replicas),
            validation_data=make_dataset(val, size, batch, multiple_of=replicas),
            epochs=epochs,
            shuffle=False,  # make_dataset already reshuffles every epoch
            callbacks=callbacks(patience, checkpoint, run_dir, phase),
            verbose=verbose,
        )
    record.add(phase, history)
    return record


def predict_labels(
    model: keras.Model, data: ImageData | ImageFiles | np.ndarray, batch_size: int = 64
) -> np.ndarray:
    """Predicted class index for every image of ImageData or ImageFiles, or every row of an
    array (such as cached features for a head); ``batch_size`` per replica."""
    if isinstance(data, ImageData | ImageFiles):
        data = make_dataset(data, model.input_shape[1], distribute.global_batch(batch_size, model))
        return np.argmax(model.predict(data, verbose=0), axis=-1)
    batch = distribute.global_batch(batch_size, model)
    return np.argmax(model.predict(data, batch_size=batch, verbose=0), axis=-1)


def accuracy(
    model: keras.Model,
    data: ImageData | ImageFiles | np.ndarray,
    labels: np.ndarray | None = None,
    batch_size: int = 64,
) -> float:
    """Fraction of ``data`` the model classifies correctly: ImageData or ImageFiles, or an
    array and its ``labels`` (e.g. a head on cached features)."""
    if isinstance(data, ImageData | ImageFiles):
        check_labels(data, model.output_shape[-1])
        labels = data.labels
    elif labels is None or len(labels) != len(data):
        raise ValueError("give one label per row of the array")
    return float(np.mean(predict_labels(model, data, batch_size) == np.asarray(labels)))


def inference_accuracy(model: keras.Model, x: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy of ``model`` on a small array from one plain call in inference mode.

    Quicker than :func:`accuracy` when called after every few steps: no ``predict`` loop.
    """
    predicted = np.argmax(np.asarray(model(x, training=False)), axis=-1)
    return float(np.mean(predicted == np.asarray(labels)))


class KeepBestAccuracy(keras.callbacks.Callback):
    """Validation accuracy after every Keras epoch; the weights of the best one are kept.

    With ``fit(..., steps_per_epoch=k)`` a check every ``k`` steps: every method of a
    comparison gets the same budget of steps, and each is judged at its best check (§3.4,
    §3.5). ``best_step``: the step of that check; ``curve``: every check's accuracy.
    """

    def __init__(self, x_val: np.ndarray, labels: np.ndarray, steps_per_check: int):
        super().__init__()
        self.x_val, self.labels, self.steps_per_check = x_val, labels, steps_per_check
        self.best, self.weights, self.best_step, self.curve = -1.0, None, 0, []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.curve.append(inference_accuracy(self.model, self.x_val, self.labels))
        if self.curve[-1] > self.best:
            self.best, self.weights = self.curve[-1], self.model.get_weights()
            self.best_step = (epoch + 1) * self.steps_per_check


class BudgetThenConvergence(keras.callbacks.Callback):
    """Scores a test set twice in one run: after ``budget`` epochs, and at convergence.

    Keeps the weights of the lowest validation loss, and stops once ``budget`` epochs are done
    and ``patience`` epochs brought no lower loss; ``at_budget`` and ``at_convergence`` hold
    the two test accuracies, ``best_epoch`` the epoch of the kept weights. For comparing a
    pretrained start with training from scratch at equal budget and at convergence (§4.1,
    §4.2).
    """

    def __init__(self, test_xy: tuple[np.ndarray, np.ndarray], budget: int, patience: int):
        super().__init__()
        self.test_xy, self.budget, self.patience = test_xy, budget, patience

    def test_accuracy(self) -> float:
        return accuracy(self.model, *self.test_xy, batch_size=250)

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.best_loss, self.best_epoch, self.best_weights = np.inf, 0, None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if epoch + 1 == self.budget:
            self.at_budget = self.test_accuracy()
        if logs["val_loss"] < self.best_loss:
            self.best_loss, self.best_epoch = logs["val_loss"], epoch + 1
            self.best_weights = self.model.get_weights()
        if epoch + 1 >= self.budget and epoch + 1 - self.best_epoch >= self.patience:
            self.model.stop_training = True

    def on_train_end(self, logs: dict | None = None) -> None:
        self.model.set_weights(self.best_weights)
        self.at_convergence = self.test_accuracy()


def fit_budget_then_convergence(
    model: keras.Model,
    train_xy: tuple[np.ndarray, np.ndarray],
    val_xy: tuple[np.ndarray, np.ndarray],
    test_xy: tuple[np.ndarray, np.ndarray],
    *,
    learning_rate: float,
    budget: int,
    patience: int,
    max_epochs: int,
    seed: int,
) -> tuple[BudgetThenConvergence, dict]:
    """Compile ``model`` with Adam and train it (batches of 32) under
    :class:`BudgetThenConvergence`; returns that callback (its two scores) and the history.

    The fit draws its shuffles inside :func:`ftutils.config.seeded`: the same ``seed`` gives
    the same fit, and the caller's generators are left where they were."""
    compile_classifier(model, "adam", learning_rate)
    scores = BudgetThenConvergence(test_xy, budget, patience)
    with seeded(seed):
        history = model.fit(
            *train_xy,
            validation_data=val_xy,
            epochs=max_epochs,
            batch_size=32,
            shuffle=True,
            callbacks=[scores],
            verbose=0,
        )
    return scores, history.history


class EpochTimer(keras.callbacks.Callback):
    """Adds each epoch's wall time to the logs (and so to the history) as ``epoch_seconds``,
    and keeps them in ``seconds``: the first epoch also traces the graph, so compare later ones."""

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds.append(time.perf_counter() - self.start)
        if logs is not None:
            logs["epoch_seconds"] = self.seconds[-1]
