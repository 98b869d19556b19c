"""Compile, fit and the two-phase fine-tune (§3.2-§3.3, §4.4).

Phase 1 trains the new head on a frozen base (feature extraction). Phase 2 unfreezes the
top of the base, BatchNormalization kept frozen, at a lower learning rate. Both phases
append to one :class:`TrainingRecord`, so their curves share a time axis.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras
import numpy as np

from ftutils import backbones, distribute, models
from ftutils.data import ImageData, check_labels, make_dataset

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

    def add(self, phase: str, history: keras.callbacks.History) -> None:
        metrics = history.history
        for i in range(len(next(iter(metrics.values()), []))):
            row = {"epoch": len(self.rows) + 1, "phase": phase}
            row.update({name: float(values[i]) for name, values in metrics.items()})
            self.rows.append(row)

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


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """One of ``sgd``, ``momentum`` (SGD, beta 0.9), ``adagrad``, ``rmsprop``, ``adam``."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](learning_rate)


def compile_classifier(
    model: keras.Model, optimizer: str = "adam", learning_rate: float = 1e-3
) -> None:
    """Sparse categorical cross-entropy and accuracy, under the model's own strategy.

    The optimizer is created in the scope of the strategy the model was built under (a
    Keras 3 optimizer can build its variables only there). Metrics go by keyword: in Keras 3
    a third positional argument is ``loss_weights``.
    """
    with distribute.scope_of(model):
        model.compile(
            optimizer=make_optimizer(optimizer, learning_rate),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
    distribute.adapt_for_multiworker(model)


def callbacks(patience: int | None = None, checkpoint: str | Path | None = None) -> list:
    """Early stopping on validation loss (best weights restored) and a best-model checkpoint."""
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


def fit(
    model: keras.Model,
    train: ImageData,
    val: ImageData,
    epochs: int,
    record: TrainingRecord | None = None,
    phase: str = "train",
    batch_size: int = 32,
    seed: int = 0,
    patience: int | None = None,
    checkpoint: str | Path | None = None,
    verbose: int = 2,
) -> TrainingRecord:
    """Fit an already compiled classifier on ImageData; append the epochs to ``record``.

    ``batch_size`` is per replica: with several replicas (GPUs, workers) each step
    consumes ``batch_size`` images on each, and this prints the global batch; each pass
    then leaves out fewer images than there are replicas (``make_dataset``'s ``multiple_of``).
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
            callbacks=callbacks(patience, checkpoint),
            verbose=verbose,
        )
    record.add(phase, history)
    return record


def two_phase_finetune(
    model: keras.Model,
    train: ImageData,
    val: ImageData,
    head_epochs: int = 5,
    finetune_epochs: int = 5,
    head_lr: float = 1e-3,
    finetune_lr: float = 1e-4,
    unfreeze_top_n: int | None = None,
    unfreeze_from: str | None = None,
    optimizer: str = "adam",
    record: TrainingRecord | None = None,
    **fit_kwargs,
) -> TrainingRecord:
    """Phase 1: head only, base frozen. Phase 2: top of the base unfrozen (BN frozen), lower lr.

    ``unfreeze_top_n`` / ``unfreeze_from`` choose how much of the base phase 2 trains (see
    ``ftutils.backbones.unfreeze``). Skip phase 1 with ``head_epochs=0`` when the head was
    already trained on cached features. Extra keyword arguments go to :func:`fit`.
    """
    record = record if record is not None else TrainingRecord()
    base = models.base_of(model)
    if head_epochs:
        backbones.freeze(base)
        compile_classifier(model, optimizer, head_lr)
        fit(model, train, val, head_epochs, record, "head", **fit_kwargs)
    if finetune_epochs:
        backbones.unfreeze(base, top_n=unfreeze_top_n, from_layer=unfreeze_from)
        compile_classifier(model, optimizer, finetune_lr)  # recompile: trainable flags changed
        fit(model, train, val, finetune_epochs, record, "fine-tune", **fit_kwargs)
    return record


def predict_labels(model: keras.Model, data: ImageData, batch_size: int = 64) -> np.ndarray:
    """Predicted class index for every image (``batch_size`` per replica)."""
    ds = make_dataset(data, model.input_shape[1], distribute.global_batch(batch_size, model))
    return np.argmax(model.predict(ds, verbose=0), axis=-1)


def accuracy(model: keras.Model, data: ImageData, batch_size: int = 64) -> float:
    """Fraction of ``data`` the model classifies correctly."""
    check_labels(data, model.output_shape[-1])
    return float(np.mean(predict_labels(model, data, batch_size) == data.labels))


@dataclasses.dataclass(frozen=True)
class TrainingState:
    """Everything one training run changes in a compiled model (see :func:`snapshot`)."""

    variables: list[np.ndarray]  # weights, BatchNormalization statistics, dropout RNG state
    optimizer: list[np.ndarray]  # step count, moments, learning rate


def snapshot(model: keras.Model) -> TrainingState:
    """Copy a compiled model's variables and optimizer state, to :func:`restore` later (§2.2).

    A sweep that trains the same architecture many times can compile one model once and
    restore a snapshot before every run, instead of building and compiling a new model:
    each compile traces the training step again, which for a whole MobileNetV2 costs about
    25 CPU seconds, more than a small run's training. The optimizer is built here if it is
    not yet, so its fresh state is part of the snapshot; do not change which layers are
    trainable between a snapshot and its restore.
    """
    if getattr(model, "optimizer", None) is None:
        raise ValueError("compile the model before taking a snapshot of its training state")
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    return TrainingState(
        [v.numpy() for v in model.variables], [v.numpy() for v in model.optimizer.variables]
    )


def restore(model: keras.Model, state: TrainingState) -> None:
    """Put a :func:`snapshot` back: the next fit continues exactly as from the snapshot."""
    targets = [*model.variables, *model.optimizer.variables]
    values = [*state.variables, *state.optimizer]
    if len(targets) != len(values):
        raise ValueError(
            f"the snapshot holds {len(values)} variables, the model {len(targets)}: it was taken "
            "from another model, or the trainable layers changed since (take a new snapshot)"
        )
    for variable, value in zip(targets, values, strict=True):
        variable.assign(value)
