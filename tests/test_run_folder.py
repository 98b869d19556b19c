"""fine_tune(run_dir=...): a run folder is resumed only by the training that made it."""

import json

import keras
import pytest

from ftutils import cache, config, frozen, recipe
from ftutils.errors import ResumeError
from tests.test_recipe import SIZE
from tests.test_recipe import _toy as toy_images


def _toy(seed=0):
    return toy_images(n=12, seed=seed)


def _classifier(dropout=0.2):
    """A small stand-in for a build_classifier model: image -> base -> pool -> dropout -> dense."""
    config.set_seed(0)
    image = keras.Input((SIZE, SIZE, 3))
    base = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Conv2D(4, 3)], name="base")
    pooled = keras.layers.GlobalAveragePooling2D()(base(image))
    dense = keras.layers.Dense(3, activation="softmax")
    return keras.Model(image, dense(keras.layers.Dropout(dropout)(pooled)))


def _fine_tune(run_dir, dropout=0.2, train=None, **arguments):
    model = _classifier(dropout)
    arguments = {"head_epochs": 1, "finetune_epochs": 0, "patience": None, **arguments}
    record = recipe.fine_tune(model, train or _toy(), _toy(seed=1), run_dir=run_dir, **arguments)
    return model, record


@pytest.fixture
def finished_run(tmp_path, monkeypatch):
    monkeypatch.setattr(frozen, "CACHE_DIR", tmp_path / "cache")
    run_dir = tmp_path / "run"
    _fine_tune(run_dir)
    return run_dir


def test_the_same_training_resumes_its_folder_and_another_is_refused_by_what_differs(
    finished_run, monkeypatch
):
    stored = json.loads((finished_run / recipe.FINGERPRINT_FILE).read_text())
    assert stored["arguments"]["head_lr"] == 1e-3 and stored["replicas"] == 1
    model, record = _fine_tune(finished_run)  # the same training: restored, not trained
    assert [phase for phase, _, _ in record.phases()] == ["head"]

    named = r"arguments\.head_lr: 0\.001 -> 0\.01\n.*another run_dir"
    with pytest.raises(ResumeError, match=named):
        _fine_tune(finished_run, head_lr=0.01)
    with pytest.raises(ResumeError, match=r"differs \(in the folder -> now\):\n  training data: "):
        _fine_tune(finished_run, train=_toy(seed=2))
    with pytest.raises(ResumeError, match="  model architecture: "):
        _fine_tune(finished_run, dropout=0.5)
    monkeypatch.setattr(cache.keras, "__version__", "9.9.9")
    with pytest.raises(ResumeError, match=r"now\):\n  keras: 3\.\S+ -> 9\.9\.9\nGive"):
        _fine_tune(finished_run)  # only the version differs


def test_a_folder_with_a_callers_own_files_is_used(tmp_path, monkeypatch):
    monkeypatch.setattr(frozen, "CACHE_DIR", tmp_path / "cache")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text("{}")  # as the command line notes its settings
    _fine_tune(tmp_path / "run")
    assert (tmp_path / "run" / recipe.FINGERPRINT_FILE).is_file()
    assert (tmp_path / "run" / "run.json").read_text() == "{}"


def test_a_training_folder_without_a_fingerprint_is_refused(finished_run):
    (finished_run / recipe.FINGERPRINT_FILE).unlink()
    with pytest.raises(ResumeError, match="holds a training but no fingerprint.json"):
        _fine_tune(finished_run)


def test_damaged_phases_or_end_weights_are_named(finished_run):
    end_weights = finished_run / "head" / recipe.END_WEIGHTS
    end_weights.write_bytes(end_weights.read_bytes()[:100])
    with pytest.raises(ResumeError, match="end-weights.npz .the weights the head phase ended"):
        _fine_tune(finished_run)
    (finished_run / recipe.PHASES_FILE).write_text('{"head": [{"epoch"')
    with pytest.raises(ResumeError, match="phases.json .the finished phases. is damaged"):
        _fine_tune(finished_run)


def test_a_resumed_run_is_refused_a_model_of_another_precision(finished_run):
    made_with = keras.mixed_precision.global_policy().name  # float32, or the configured policy
    other = "mixed_bfloat16" if made_with == "float32" else "float32"
    keras.mixed_precision.set_global_policy(other)
    try:
        with pytest.raises(ResumeError, match=f"precision: {made_with} -> {other}"):
            _fine_tune(finished_run)
    finally:
        keras.mixed_precision.set_global_policy(made_with)


def test_an_optimizer_object_is_recorded_by_its_config_so_the_same_one_resumes(
    tmp_path, monkeypatch
):
    """An optimizer object (or a schedule) is recorded by its key, not by a repr holding its
    address: the same call resumes, another optimizer is refused."""
    monkeypatch.setattr(frozen, "CACHE_DIR", tmp_path / "cache")
    run_dir = tmp_path / "run"
    _fine_tune(run_dir, optimizer=keras.optimizers.SGD(momentum=0.9))
    _, record = _fine_tune(run_dir, optimizer=keras.optimizers.SGD(momentum=0.9))
    assert [phase for phase, _, _ in record.phases()] == ["head"]
    with pytest.raises(ResumeError, match=r"arguments\.optimizer: "):
        _fine_tune(run_dir, optimizer=keras.optimizers.SGD(momentum=0.5))
