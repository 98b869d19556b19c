"""Two MultiWorkerMirroredStrategy workers on 127.0.0.1 train exactly like one process.

``scripts/multiworker_train.py`` runs as two worker processes (TF_CONFIG with free local
ports; the strategy talks gRPC between them) and, at the same time, as one process without
TF_CONFIG taking the same global batch. Tiny on purpose: 20 images of 32 px, a global batch
of 10 (5 per worker), 2 epochs = 4 SGD steps on the classifier's head.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "multiworker_train.py"
ARGS = ["--per-class", "2", "--batch", "5", "--epochs", "2", "--lr", "0.1"]
TIMEOUT = 240  # seconds for all three runs together; about 30 s on 2 idle cores


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


def _tail(path: Path, lines: int = 25) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _run_all(runs: dict[str, tuple[dict, list[str]]], tmp_path: Path) -> None:
    """Start every run at once; fail, killing the others, as soon as one fails or time is up.

    ``runs`` maps a name to (environment, extra arguments). Output goes to files, not pipes
    (a full pipe would block a worker, and with it the other one).
    """
    procs, problem = {}, None
    try:
        for name, (env, extra) in runs.items():
            command = [sys.executable, str(SCRIPT), *ARGS, *extra]
            command += ["--out", str(tmp_path / "weights"), "--backup-dir", str(tmp_path / name)]
            with (
                open(tmp_path / f"{name}.out", "w") as out,
                open(tmp_path / f"{name}.err", "w") as err,
            ):
                procs[name] = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=err)
        deadline = time.monotonic() + TIMEOUT
        while problem is None and any(p.poll() is None for p in procs.values()):
            failed = [n for n, p in procs.items() if p.returncode not in (None, 0)]
            if failed:  # the other worker would wait for it until the deadline
                problem = f"{failed[0]} exited with code {procs[failed[0]].returncode}"
            elif time.monotonic() > deadline:
                running = [n for n, p in procs.items() if p.poll() is None]
                problem = f"{', '.join(running)} still running after {TIMEOUT} s (hung?)"
            time.sleep(0.2)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    if problem is None and any(p.returncode for p in procs.values()):
        problem = ", ".join(f"{n} exited with code {p.returncode}" for n, p in procs.items())
    if problem:
        tails = "\n".join(
            f"--- {n} (exit {p.returncode}) stdout:\n{_tail(tmp_path / f'{n}.out')}\n"
            f"--- {n} stderr:\n{_tail(tmp_path / f'{n}.err')}"
            for n, p in procs.items()
        )
        raise AssertionError(f"{problem}\n{tails}")


def test_two_workers_match_each_other_and_one_process(tmp_path):
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    runs = {
        f"worker-{i}": (
            _env({"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}),
            [],
        )
        for i in range(2)
    }
    runs["single"] = (_env(None), ["--workers", "2"])  # the global batch of the two workers
    _run_all(runs, tmp_path)
    for i in range(2):  # really one cluster of two workers, not two independent runs
        assert "2 replica(s) in sync, global batch 10" in (tmp_path / f"worker-{i}.out").read_text()

    w0, w1, one = (
        np.load(tmp_path / "weights" / f"{n}.npz") for n in ("worker-0", "worker-1", "single")
    )
    assert w0.files == w1.files == one.files
    final = [k for k in w0.files if not k.startswith("initial:")]
    trained = [k[len("initial:") :] for k in w0.files if k.startswith("initial:")]
    assert trained == ["classifier/kernel", "classifier/bias"]  # the base is frozen

    # Not vacuous: the 4 steps moved the head a lot (about 0.09 here, glorot init ~0.07).
    moved = max(float(np.abs(w0[k] - w0[f"initial:{k}"]).max()) for k in trained)
    assert moved > 1e-2
    # The workers started equal (same seed) and applied the same all-reduced gradients:
    # the all-reduce hands every worker the same sum (measured: identical weights).
    for k in final:
        np.testing.assert_allclose(w1[k], w0[k], rtol=0, atol=1e-7, err_msg=k)
    # One process sees the same 10 images per step. Only float32 rounding differs: the
    # gradient is summed from two halves (all-reduce) instead of over 10 images at once,
    # and convolutions run on batches of 5 instead of 10. That costs a few ulp per step
    # (measured: at most 4e-9, under one float32 ulp at 0.1); a real fault (a worker's
    # gradient lost or counted twice, wrong sharding) changes the update by tens of percent.
    # Tolerance: 1e-4 of what training moved.
    for k in final:
        np.testing.assert_allclose(w0[k], one[k], rtol=0, atol=1e-4 * moved, err_msg=k)
