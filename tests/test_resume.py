"""Resuming an interrupted training from its run folder (§4.4): kill -9, restart, compare.

The slow tests train a MobileNetV2 at 32 px on 150 Fashion-MNIST images in a child process,
kill it with SIGKILL once its backup shows enough finished epochs, and restart the same
training here with the same run folder.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from ftutils import config, data, models, recipe, training
from ftutils.errors import ResumeError

ROOT = Path(__file__).resolve().parent.parent
SIZE = 32
EPOCHS = 4  # of the plain fit
HEAD_EPOCHS, FINETUNE_EPOCHS = 2, 3  # of the two-phase fine-tune (unequal: "Epoch k/3")


def _data() -> tuple[data.ImageData, data.ImageData]:
    """T-shirt, trouser and sneaker: 50 training and 30 validation images of each."""
    train, test = data.load_fashion_mnist([0, 1, 7])
    return data.per_class(train, 50, seed=0), data.per_class(test, 30, seed=0)


def fit_run(run_dir: str | None) -> tuple[keras.Model, training.TrainingRecord]:
    """The head of a frozen MobileNetV2 trained through the network (``fit_classifier``)."""
    config.set_seed(0)
    train, val = _data()
    model = models.build_classifier("mobilenet_v2", 3, SIZE, dropout=0)
    training.compile_classifier(model, "adam", 3e-3)
    record = training.fit_classifier(
        model, train, val, EPOCHS, patience=3, run_dir=run_dir, verbose=2
    )
    return model, record


def fine_tune_run(run_dir: str) -> tuple[keras.Model, training.TrainingRecord]:
    """§4.4's two phases; the fine-tune trains the top 10 layers through the network."""
    config.set_seed(0)
    train, val = _data()
    model = models.build_classifier("mobilenet_v2", 3, SIZE, dropout=0)
    record = recipe.fine_tune(
        model, train, val, head_epochs=HEAD_EPOCHS, finetune_epochs=FINETUNE_EPOCHS,
        unfreeze_top_n=10, patience=None, run_dir=run_dir, verbose=2,
    )  # fmt: skip
    return model, record


def _start(function: str, run_dir: Path, log: Path) -> subprocess.Popen:
    """Run ``function(run_dir)`` of this module in a child Python, its output into ``log``."""
    code = (
        "from ftutils import distribute; distribute.configure(); "
        f"from tests.test_resume import {function}; {function}({str(run_dir)!r})"
    )
    env = {**os.environ, "FTUTILS_CACHE": str(run_dir.parent / "cache")}
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-u", "-c", code], cwd=ROOT, env=env, stdout=out, stderr=out
        )


def _backed_up(backup: Path) -> int:
    """The number of finished epochs in a Keras backup folder (0 while there is none)."""
    try:
        return json.loads((backup / "training_metadata.json").read_text())["epoch"]
    except (OSError, ValueError, KeyError):  # not there yet, or being written
        return 0


def _kill_after(child: subprocess.Popen, backup: Path, epochs: int, log: Path) -> int:
    """SIGKILL the child as soon as ``backup`` holds ``epochs`` finished epochs; return how
    many it holds then."""
    deadline = time.monotonic() + 120
    while _backed_up(backup) < epochs:
        if child.poll() is not None or time.monotonic() > deadline:
            child.kill()
            pytest.fail(f"the child ended or hung before epoch {epochs}:\n{log.read_text()}")
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()
    return _backed_up(backup)


def _epochs_started(output: str, total: int) -> list[int]:
    """The epochs a Keras fit of ``total`` epochs started (its ``Epoch k/total`` lines)."""
    return [int(k) for k in re.findall(rf"^Epoch (\d+)/{total}$", output, re.MULTILINE)]


def test_a_killed_fit_resumes_from_its_last_finished_epoch(tmp_path, capsys):
    """Killed during epoch 3 of 4, restarted: epochs 3 and 4 run, and the result matches.

    The child's first epochs are those of an uninterrupted run (same seeds, op determinism:
    equal to float rounding), and so are their logs in the resumed record. The resumed epochs do not
    repeat the uninterrupted run exactly: the seeded shuffle of the training images restarts
    with the process, so epochs 3 and 4 see the orders of epochs 1 and 2. Measured over five
    shuffle seeds, this training ends within 0.011 validation accuracy (1 of 90 images) and
    0.007 validation loss of itself, so the tolerances are 0.035 (3 images) and 0.02. A
    resume that lost the weights (2 epochs from the start) would end about 0.12 higher in
    validation loss; one that lost the epoch count would run 4 epochs.
    """
    run_dir, log = tmp_path / "run", tmp_path / "child.log"
    child = _start("fit_run", run_dir, log)
    finished = _kill_after(child, run_dir / "train" / "backup", 2, log)
    started = _epochs_started(log.read_text(), EPOCHS)
    assert 2 <= finished < EPOCHS
    assert max(started) - finished <= 1  # only the running epoch is lost

    capsys.readouterr()
    model, resumed = fit_run(str(run_dir))
    assert _epochs_started(capsys.readouterr().out, EPOCHS) == list(range(finished + 1, EPOCHS + 1))
    reference_model, reference = fit_run(None)
    assert len(resumed.rows) == len(reference.rows) == EPOCHS
    np.testing.assert_allclose(
        resumed.series("val_loss")[:finished], reference.series("val_loss")[:finished], rtol=1e-5
    )
    _, val = _data()
    assert abs(training.accuracy(model, val) - training.accuracy(reference_model, val)) <= 0.035
    assert abs(resumed.series("val_loss")[-1] - reference.series("val_loss")[-1]) <= 0.02
    assert not (run_dir / "train" / "backup").exists()  # a finished fit leaves no backup


def test_fine_tune_killed_in_its_fine_tune_phase_resumes_there(tmp_path, capsys, monkeypatch):
    """The head phase had finished: the restart restores it and trains only the rest of the
    fine-tune phase, from that phase's own backup. Once both have finished, the same call
    trains nothing and gives the same weights and record."""
    run_dir, log = tmp_path / "run", tmp_path / "child.log"
    child = _start("fine_tune_run", run_dir, log)
    finished = _kill_after(child, run_dir / "fine-tune" / "backup", 1, log)
    assert 1 <= finished < FINETUNE_EPOCHS
    assert max(_epochs_started(log.read_text(), FINETUNE_EPOCHS)) - finished <= 1
    head_rows = json.loads((run_dir / "phases.json").read_text())["head"]
    assert "fine-tune" not in json.loads((run_dir / "phases.json").read_text())

    trained = []
    train_part = recipe._train_part

    def spy(*args):
        trained.append(args[8])  # the phase
        train_part(*args)

    monkeypatch.setattr(recipe, "_train_part", spy)
    capsys.readouterr()
    model, record = fine_tune_run(str(run_dir))
    output = capsys.readouterr().out
    assert trained == ["fine-tune"]
    assert "head: finished in an earlier run" in output
    assert _epochs_started(output, FINETUNE_EPOCHS) == list(
        range(finished + 1, FINETUNE_EPOCHS + 1)
    )
    assert record.phases() == [
        ("head", 1, HEAD_EPOCHS),
        ("fine-tune", HEAD_EPOCHS + 1, HEAD_EPOCHS + FINETUNE_EPOCHS),
    ]
    assert record.rows[:HEAD_EPOCHS] == head_rows
    assert set(json.loads((run_dir / "phases.json").read_text())) == {"head", "fine-tune"}

    again, again_record = fine_tune_run(str(run_dir))
    assert trained == ["fine-tune"] and again_record.rows == record.rows and again.compiled
    for a, b in zip(again.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


class _Scripted(keras.callbacks.Callback):
    """Replaces each epoch's ``val_loss`` by a scripted one and keeps each epoch's weights;
    raises at the start of epoch ``stop_at`` (an interruption inside the process)."""

    def __init__(self, losses, stop_at=None):
        super().__init__()
        self.losses, self.stop_at, self.weights = losses, stop_at, {}

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.stop_at:
            raise KeyboardInterrupt

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = self.losses[epoch]
        self.weights[epoch] = self.model.get_weights()


def _dense(seed):
    config.set_seed(seed)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    training.compile_classifier(model, "adam", 1e-2)
    return model


def _arrays():
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    return x, (x[:, 0] > 0).astype("int64")


def test_early_stopping_after_a_resume_counts_from_the_best_epoch_before_it(tmp_path):
    """Best epoch 2, killed after epoch 3, patience 3: the resumed fit stops after epoch 5,
    as the uninterrupted one would, with epoch 2's weights read back from the run folder."""
    x, y = _arrays()
    losses = [1.0, 0.5, 0.8, 0.9, 0.95, 0.97, 0.99, 1.0]
    first = _Scripted(losses, stop_at=3)
    with pytest.raises(KeyboardInterrupt):
        _dense(0).fit(x, y, validation_data=(x, y), epochs=8, verbose=0,
                      callbacks=[first, *training.callbacks(3, run_dir=tmp_path)])  # fmt: skip
    model = _dense(1)  # a new start: everything must come from the run folder
    resumed = [_Scripted(losses), *training.callbacks(3, run_dir=tmp_path)]
    history = model.fit(x, y, validation_data=(x, y), epochs=8, verbose=0, callbacks=resumed)
    assert history.epoch == [0, 1, 2, 3, 4]
    assert history.history["val_loss"] == losses[:5]
    for kept, best in zip(model.get_weights(), first.weights[1], strict=True):
        np.testing.assert_array_equal(kept, best)
    # Keras leaves the resumed epoch on the model; the next fit must run all its epochs
    assert len(model.fit(x, y, epochs=2, verbose=0).history["loss"]) == 2


def test_record_of_a_resumed_fit_that_validates_every_other_epoch():
    """Resumed at epoch 2 with validation_freq=2, Keras validates epochs 2 and 4 (its 1st and
    3rd epochs of this call): the record has validation losses exactly there."""
    x, y = _arrays()
    history = _dense(0).fit(x, y, validation_data=(x, y), epochs=5, initial_epoch=1,
                            validation_freq=2, verbose=0)  # fmt: skip
    record = training.TrainingRecord()
    record.add("head", history, validation_freq=2)
    val_loss = record.series("val_loss")
    assert [np.isnan(v) for v in val_loss] == [False, True, False, True]
    np.testing.assert_array_equal(val_loss[[0, 2]], history.history["val_loss"])


def _interrupted_fit(run_dir, losses, stop_at):
    """Epochs before ``stop_at`` of a fit with the resumable callbacks, then a KeyboardInterrupt."""
    x, y = _arrays()
    scripted = _Scripted(losses, stop_at=stop_at)
    with pytest.raises(KeyboardInterrupt):
        _dense(0).fit(x, y, validation_data=(x, y), epochs=len(losses), verbose=0,
                      callbacks=[scripted, *training.callbacks(3, run_dir=run_dir)])  # fmt: skip
    return scripted


def test_a_kill_while_the_best_weights_are_written_leaves_the_previous_file_whole(
    tmp_path, monkeypatch
):
    x, y = _arrays()
    model = _dense(0)
    scripted = _Scripted([1.0, 0.5])
    save_weights = type(model).save_weights

    def killed_while_saving(self, filepath, *args, **kwargs):
        if scripted.weights.get(1) is None:  # epoch 1: saved whole
            return save_weights(self, filepath, *args, **kwargs)
        Path(filepath).write_bytes(b"\x89HDF\r\n")  # the first bytes, then the kill
        raise KeyboardInterrupt

    monkeypatch.setattr(type(model), "save_weights", killed_while_saving)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, validation_data=(x, y), epochs=2, verbose=0,
                  callbacks=[scripted, *training.callbacks(run_dir=tmp_path)])  # fmt: skip
    monkeypatch.undo()
    epoch_1 = _dense(1)
    epoch_1.load_weights(tmp_path / "train" / training.BEST_WEIGHTS)
    for kept, saved in zip(epoch_1.get_weights(), scripted.weights[0], strict=True):
        np.testing.assert_array_equal(kept, saved)
    assert [p.name for p in (tmp_path / "train").iterdir() if p.name.startswith(".tmp")] == []


def test_a_resume_that_finds_the_best_weights_damaged_names_the_file(tmp_path):
    _interrupted_fit(tmp_path, [1.0, 0.5, 0.8, 0.9, 0.95], stop_at=3)
    best = tmp_path / "train" / training.BEST_WEIGHTS
    best.write_bytes(best.read_bytes()[: best.stat().st_size // 2])  # a copy cut short
    x, y = _arrays()
    with pytest.raises(ResumeError, match=r"best\.weights\.h5 \(epoch 2's weights.*Delete"):
        _dense(1).fit(x, y, validation_data=(x, y), epochs=5, verbose=0,
                      callbacks=training.callbacks(3, run_dir=tmp_path))  # fmt: skip


def test_a_resume_that_finds_the_epochs_log_damaged_names_the_file(tmp_path):
    _interrupted_fit(tmp_path, [1.0, 0.5, 0.8, 0.9, 0.95], stop_at=3)
    log = tmp_path / "train" / training.EPOCH_LOG
    log.write_text(log.read_text()[:20])
    x, y = _arrays()
    with pytest.raises(ResumeError, match=r"epochs\.json \(the logs of its epochs\) is damaged"):
        _dense(1).fit(x, y, validation_data=(x, y), epochs=5, verbose=0,
                      callbacks=training.callbacks(3, run_dir=tmp_path))  # fmt: skip


def test_a_whole_model_checkpoint_is_written_whole_and_checked_at_a_resume(tmp_path):
    checkpoint = tmp_path / "best.keras"
    x, y = _arrays()
    losses = [1.0, 0.5, 0.8, 0.9, 0.95]
    scripted = _Scripted(losses, stop_at=3)
    resumable = training.callbacks(3, checkpoint, tmp_path)
    with pytest.raises(KeyboardInterrupt):
        _dense(0).fit(x, y, validation_data=(x, y), epochs=5, verbose=0,
                      callbacks=[scripted, *resumable])  # fmt: skip
    saved = keras.saving.load_model(checkpoint)
    for kept, best in zip(saved.get_weights(), scripted.weights[1], strict=True):
        np.testing.assert_array_equal(kept, best)
    checkpoint.write_bytes(checkpoint.read_bytes()[:200])
    with pytest.raises(ResumeError, match=r"best\.keras \(epoch 2's weights"):
        _dense(1).fit(x, y, validation_data=(x, y), epochs=5, verbose=0,
                      callbacks=training.callbacks(3, checkpoint, tmp_path))  # fmt: skip
