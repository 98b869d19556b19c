"""Two MultiWorkerMirroredStrategy workers on 127.0.0.1 train exactly like one process.

``scripts/multiworker_train.py`` runs as two worker processes (TF_CONFIG with free local
ports; the strategy talks gRPC between them) and, at the same time, as one process without
TF_CONFIG taking the same global batch. Tiny on purpose: 20 training and 20 validation
images of 32 px, a global batch of 10 (5 per worker), 3 epochs = 6 SGD steps on the
classifier's head, each epoch validated. The book's resumable callbacks write the run
folder; only the chief may write it, and a cluster killed mid-training resumes from its
backup. The fast tests at the end check the chief-only writes in this process.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from ftutils import cache, distribute, training
from ftutils.errors import DistributionError

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "multiworker_train.py"
ARGS = ["--per-class", "2", "--val-per-class", "2", "--batch", "5", "--epochs", "3"]
TIMEOUT = 600  # seconds for the runs started together: generous, for a busy machine


def _free_ports(n: int) -> list[int]:
    """Ports the OS has just handed out (all sockets open at once, so the ports differ)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _env(tf_config: dict | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CONFIG", "FTUTILS_STRATEGY")}
    env.update(
        TF_CPP_MIN_LOG_LEVEL="3",
        FTUTILS_DETERMINISTIC="1",
        FTUTILS_PRECISION="float32",
        CUDA_VISIBLE_DEVICES="",  # the CPU path (gRPC collectives), even on a GPU machine
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return env


def _workers() -> dict[str, dict]:
    """The environment of each of two workers on free local ports."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    return {
        f"worker-{i}": _env({"cluster": cluster, "task": {"type": "worker", "index": i}})
        for i in range(2)
    }


def _tail(path: Path, lines: int = 25) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _run_all(
    runs: dict[str, tuple[dict, list[str]]], logs: Path, killed: tuple[str, ...] = ()
) -> None:
    """Start every run at once; fail, killing the others, as soon as one fails or time is up.

    ``runs`` maps a name to (environment, arguments after ARGS). A run in ``killed`` is
    expected to kill itself (``--kill-in-epoch``); once it has, the other workers of its
    cluster (names starting with ``worker-``) are killed too, if TensorFlow's health check
    has not already failed them: a lost worker stops the rest. Output goes to files, not
    pipes (a full pipe would block a worker, and with it the other one).
    """
    logs.mkdir(parents=True, exist_ok=True)
    procs, problem, stopped = {}, None, set()
    try:
        for name, (env, extra) in runs.items():
            command = [sys.executable, str(SCRIPT), *ARGS, *extra]
            with open(logs / f"{name}.out", "w") as out, open(logs / f"{name}.err", "w") as err:
                procs[name] = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=err)
        deadline = time.monotonic() + TIMEOUT
        while problem is None and any(p.poll() is None for p in procs.values()):
            if any(procs[n].poll() is not None for n in killed):  # the cluster is lost
                for name, p in procs.items():
                    if name.startswith("worker-") and name not in killed:
                        p.kill()  # if it has not already failed on its own
                        p.wait()
                        stopped.add(name)
            failed = [n for n, p in procs.items() if p.poll() not in (None, 0)]
            if unexpected := [n for n in failed if n not in (*killed, *stopped)]:
                # the other worker would wait for it until the deadline
                problem = f"{unexpected[0]} exited with code {procs[unexpected[0]].returncode}"
            elif time.monotonic() > deadline:
                running = [n for n, p in procs.items() if p.poll() is None]
                problem = f"{', '.join(running)} still running after {TIMEOUT} s (hung?)"
            time.sleep(0.2)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    if problem is None:
        wrong = [
            f"{n} exited with code {p.returncode}"
            for n, p in procs.items()
            if n not in stopped and p.returncode != (-signal.SIGKILL if n in killed else 0)
        ]
        problem = ", ".join(wrong) or None
    if problem:
        tails = "\n".join(
            f"--- {n} (exit {p.returncode}) stdout:\n{_tail(logs / f'{n}.out')}\n"
            f"--- {n} stderr:\n{_tail(logs / f'{n}.err')}"
            for n, p in procs.items()
        )
        raise AssertionError(f"{problem}\n{tails}")


def _epochs_run(log: Path) -> list[int]:
    """The epochs a run's process ran (after a restart: only those after the backup)."""
    lines = log.read_text().splitlines()
    return [int(line.split()[-1]) for line in lines if " running epoch " in line]


def _assert_trained_alike(weights: Path, names: tuple[str, ...], reference: str) -> None:
    """Every worker ends with the same weights, validation losses and predictions, equal to
    those of the one-process ``reference`` up to float32 rounding."""
    w0, w1, one = (np.load(weights / f"{n}.npz") for n in (*names, reference))
    assert w0.files == w1.files == one.files
    final = [k for k in w0.files if not k.startswith("initial:")]
    trained = [k[len("initial:") :] for k in w0.files if k.startswith("initial:")]
    assert trained == ["classifier/kernel", "classifier/bias"]  # the base is frozen

    # Not vacuous: the 6 steps moved the head a lot (about 0.1 here, glorot init ~0.07).
    moved = max(float(np.abs(w0[k] - w0[f"initial:{k}"]).max()) for k in trained)
    assert moved > 1e-2
    assert w0["predictions"].shape == (20, 10)  # predict gathered both workers' halves
    # The workers started equal (same seed) and applied the same all-reduced gradients:
    # the all-reduce hands every worker the same sum (measured: identical weights).
    for k in final:
        np.testing.assert_allclose(w1[k], w0[k], rtol=0, atol=1e-7, err_msg=k)
    # One process sees the same 10 images per step. Only float32 rounding differs: the
    # gradient is summed from two halves (all-reduce) instead of over 10 images at once,
    # and convolutions run on batches of 5 instead of 10. That costs a few ulp per step
    # (measured: at most 4e-9, under one float32 ulp at 0.1); a real fault (a worker's
    # gradient lost or counted twice, wrong sharding, a validation loss of one worker's
    # half, an epoch run twice or skipped) changes the result by tens of percent.
    # Tolerance: 1e-4 of what training moved (weights), 1e-5 relative (losses, outputs).
    for k in final:
        if k in ("predictions", "val_loss"):
            np.testing.assert_allclose(w0[k], one[k], rtol=1e-5, atol=1e-6, err_msg=k)
        else:
            np.testing.assert_allclose(w0[k], one[k], rtol=0, atol=1e-4 * moved, err_msg=k)


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.mark.own_strategy
def test_two_workers_fit_with_validation_like_one_process(tmp_path):
    """A fit that validates every epoch (Keras' test step under the strategy) runs on two
    workers; only the chief writes its run folder."""
    weights = ["--out", str(tmp_path / "weights")]
    runs = {
        name: (env, [*weights, "--run-dir", str(tmp_path / f"run-{name}")])
        for name, env in _workers().items()
    }
    single = ["--workers", "2", "--run-dir", str(tmp_path / "run-single")]
    runs["single"] = (_env(None), [*weights, *single])  # the global batch of the two workers
    _run_all(runs, tmp_path / "logs")
    for i in range(2):  # really one cluster of two workers, not two independent runs
        out = (tmp_path / "logs" / f"worker-{i}.out").read_text()
        assert "2 replica(s) in sync, global batch 10" in out
    _assert_trained_alike(tmp_path / "weights", ("worker-0", "worker-1"), "single")

    # The chief's run folder is the one a single process writes (the backup is deleted at
    # the end); the other worker, given a folder of its own, wrote nothing into it.
    chief = tmp_path / "run-worker-0"
    assert _files(chief) == _files(tmp_path / "run-single")
    assert _files(chief) == ["train/best.weights.h5", "train/epochs.json"]
    assert _files(tmp_path / "run-worker-1") == []
    logged = [row["val_loss"] for row in json.loads((chief / "train/epochs.json").read_text())]
    np.testing.assert_allclose(logged, np.load(tmp_path / "weights/worker-0.npz")["val_loss"])


@pytest.mark.own_strategy
def test_killed_cluster_resumes_from_the_backup(tmp_path):
    """Worker 1 dies in epoch 2, worker 0 is stopped; both started again continue with
    epoch 2 from the chief's backup and end as an uninterrupted run does."""
    workers = _workers()
    run_dir = ["--run-dir", str(tmp_path / "run")]  # one folder: the chief's, read by both
    weights = ["--out", str(tmp_path / "weights")]
    runs = {
        "worker-0": (workers["worker-0"], [*weights, *run_dir]),
        "worker-1": (workers["worker-1"], [*weights, *run_dir, "--kill-in-epoch", "2"]),
        "single": (_env(None), [*weights, "--workers", "2", "--run-dir", str(tmp_path / "one")]),
    }
    _run_all(runs, tmp_path / "killed", killed=("worker-1",))
    assert "killed in epoch 2" in (tmp_path / "killed" / "worker-1.out").read_text()
    assert not (tmp_path / "weights" / "worker-0.npz").exists()  # it never finished
    assert _files(tmp_path / "run" / "train" / "backup")  # the chief's backup of epoch 1

    restarted = {name: (env, [*weights, *run_dir]) for name, env in _workers().items()}
    _run_all(restarted, tmp_path / "restarted")
    for name in restarted:
        assert _epochs_run(tmp_path / "killed" / f"{name}.out")[0] == 1
        assert _epochs_run(tmp_path / "restarted" / f"{name}.out") == [2, 3], name
    _assert_trained_alike(tmp_path / "weights", ("worker-0", "worker-1"), "single")
    assert _files(tmp_path / "run") == ["train/best.weights.h5", "train/epochs.json"]


@pytest.fixture
def second_worker(monkeypatch):
    """This process as worker 1 of a two-worker cluster (only TF_CONFIG; no strategy)."""
    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    config = {"cluster": cluster, "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(config))


@pytest.mark.parametrize(
    ("cluster", "task", "chief"),
    [
        (None, None, True),  # no TF_CONFIG: one process
        (["worker"], ("worker", 0), True),
        (["worker"], ("worker", 1), False),
        (["chief", "worker"], ("chief", 0), True),
        (["chief", "worker"], ("worker", 0), False),
        (["worker", "evaluator"], ("evaluator", 0), False),
    ],
)
def test_is_chief(monkeypatch, cluster, task, chief):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    if cluster is not None:
        tasks = {kind: ["127.0.0.1:1", "127.0.0.1:2"] for kind in cluster}
        config = {"cluster": tasks, "task": {"type": task[0], "index": task[1]}}
        monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    assert distribute.is_chief() is chief


def test_is_chief_explains_bad_tf_config(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "{'cluster': ...}")
    with pytest.raises(DistributionError, match="TF_CONFIG is not valid JSON.*cluster"):
        distribute.is_chief()


def test_write_atomically_writes_only_on_the_chief(tmp_path, second_worker):
    written = []

    def write(temporary: Path) -> None:
        temporary.write_text("weights")
        written.append(temporary)

    cache.write_atomically(tmp_path / "run" / "model.json", write)
    assert len(written) == 1  # the work was done (it may take part in collectives)...
    assert not written[0].exists()  # ...into a temporary folder, deleted
    assert not (tmp_path / "run").exists()  # and nothing was written where it was asked


def test_other_workers_checkpoint_into_a_temporary_folder(tmp_path, second_worker):
    """On a worker other than the chief, the run folder's checkpoint and backup callbacks
    write elsewhere, and a backup the chief left is restored from, not deleted."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    training.compile_classifier(model, "sgd", 0.1)
    x, y = np.zeros((4, 2), "float32"), np.zeros(4, "int64")
    phase = tmp_path / "run" / "train"
    chief_backup = phase / training.BACKUP_DIR
    chief_backup.mkdir(parents=True)
    (chief_backup / "training_metadata.json").write_text(json.dumps({"epoch": 2, "batch": 0}))
    model.save_weights(chief_backup / "latest.weights.h5")
    before = _files(tmp_path)

    callbacks = training.resumable_callbacks(phase, patience=2)
    seen = []  # where the caller's own backup callback points while the fit runs
    watch = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda *_: seen.append(callbacks[-1].backup_dir)
    )
    history = distribute._chief_writes(model.fit)(
        x, y, validation_data=(x, y), epochs=4, callbacks=[*callbacks, watch], verbose=0
    )
    assert seen == [str(chief_backup)] * 2  # a copy was redirected, never the caller's object
    assert history.epoch == [2, 3]  # resumed from the chief's backup of epoch 2
    assert _files(tmp_path) == before  # no checkpoint written, the backup left in place
    assert callbacks[-1].backup_dir == str(chief_backup)
