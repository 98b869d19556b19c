"""Benchmark: TensorFlow's oneDNN CPU kernels on and off, for the book's heaviest work.

TensorFlow 2.21 turns oneDNN on by default only on CPUs with AVX-512 extensions; ``import
ftutils`` turns it on everywhere (``TF_ENABLE_ONEDNN_OPTS=1``, see ``ftutils/__init__``). This
script times, in one subprocess per setting,

* two epochs of VGG16 trained from scratch on 320 random 32 px images (what notebook 04_2's
  source pretraining does),
* one MobileNetV2 forward pass over 256 random 96 px images (what feature extraction does),

each after one untimed run (tracing), and prints seconds and the ratio off/on. On an AVX2-only
AMD EPYC (2 cores), over three runs, oneDNN made the VGG16 epochs 1.8 to 3.2 times faster and
the forward pass 0.4 to 1.2 times as fast (slower in two runs): the reason to keep it on is
that every CPU then runs the same kind of kernels, not speed. Run with ``python
bench/onednn.py``; about three minutes on 2 cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def measure() -> dict[str, float]:
    """Seconds for the two workloads in this process, with whatever oneDNN setting it has."""
    import ftutils  # noqa: F401  (first: it imports TensorFlow with its notices silenced)

    # isort: split
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    vgg = keras.applications.VGG16(weights=None, input_shape=(32, 32, 3), classes=5)
    vgg.compile("adam", "sparse_categorical_crossentropy")
    x = rng.random((320, 32, 32, 3), dtype="float32")
    y = rng.integers(0, 5, 320)
    vgg.fit(x, y, batch_size=32, epochs=1, verbose=0)
    start = time.perf_counter()
    vgg.fit(x, y, batch_size=32, epochs=2, verbose=0)
    seconds = {"VGG16, 2 training epochs": time.perf_counter() - start}

    mobilenet = keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3))
    images = rng.random((256, 96, 96, 3), dtype="float32")
    mobilenet.predict(images, verbose=0)
    start = time.perf_counter()
    mobilenet.predict(images, verbose=0)
    seconds["MobileNetV2, 256 images forward"] = time.perf_counter() - start
    return seconds


def run(setting: str) -> dict[str, float]:
    """``measure()`` in a fresh Python with ``TF_ENABLE_ONEDNN_OPTS=setting``."""
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": setting, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run(
        [sys.executable, __file__, "--measure"], env=env, capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    off, on = run("0"), run("1")
    print(f"{'workload':36s} {'oneDNN off':>11s} {'oneDNN on':>10s} {'off/on':>7s}")
    for name in off:
        print(f"{name:36s} {off[name]:10.2f}s {on[name]:9.2f}s {off[name] / on[name]:6.2f}x")


if __name__ == "__main__":
    if sys.argv[1:] == ["--measure"]:
        print(json.dumps(measure()))
    else:
        main()
