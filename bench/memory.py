"""Benchmark: peak memory of a large image folder in memory vs streamed from disk (§2.1).

Writes 5,000 generated 256x256 JPEGs (5 classes, ``scripts/make_image_folder.py``'s
``picture``) into a temporary folder, then runs the same work in two fresh child processes:
the pooled features of every image through a frozen MobileNetV2 at 224 px
(``frozen.extract_features``, no disk cache), once from ``data.load_image_folder`` (the
folder decoded into one uint8 array) and once from ``data.scan_image_folder`` (files read and
decoded batch by batch). Prints each child's peak resident memory (``VmHWM``), their ratio,
whether streaming stays under 1.5 GB, and that both computed the same features.

Batches of 32: besides TensorFlow and the model (~750 MB here), the forward pass dominates
what streaming needs, and it grows with the batch (measured at 224 px: about +0.3 GB at 16,
+0.6 GB at 32, +1.15 GB at 64, ``extract_features``' default).

Not a timed test: run with ``make bench`` (KERAS_HOME must hold the MobileNetV2 weights);
about 5 minutes on 2 cores, most of it the two forward passes.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
LIMIT_BYTES = 1.5 * 2**30
CLASSES = 5


def make_folder(root: Path, n_images: int, side: int = 256) -> Path:
    """``n_images`` JPEGs in ``CLASSES`` class folders: each class its colour and stripes."""
    script = ROOT / "scripts" / "make_image_folder.py"
    spec = importlib.util.spec_from_file_location("make_image_folder", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rng = np.random.default_rng(0)
    for i in range(n_images):
        label = i % CLASSES
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        module.picture(label, rng, side).save(folder / f"{i:05d}.jpg", quality=90)
    return root


def peak_rss_bytes() -> int:
    """This process's peak resident memory: /proc's VmHWM, else getrusage (KiB on Linux)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(mode: str, folder: Path, size: int, batch_size: int, out: Path) -> None:
    """One mode's work in this (fresh) process; its numbers as JSON on stdout."""
    import warnings

    from ftutils import data, frozen, models

    model = models.build_classifier("mobilenet_v2", CLASSES, size)
    baseline = peak_rss_bytes()  # TensorFlow, Keras and the model, before any image
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        images = data.load_image_folder(folder, size) if mode == "memory" else (
            data.scan_image_folder(folder))  # fmt: skip
    loaded = time.perf_counter() - start
    features = frozen.extract_features(model, images, batch_size, use_disk_cache=False)
    np.save(out, features)
    print(json.dumps({"mode": mode, "images": len(images), "peak": peak_rss_bytes(),
                      "baseline": baseline, "load_s": loaded,
                      "total_s": time.perf_counter() - start}))  # fmt: skip


def run_child(mode: str, folder: Path, size: int, batch_size: int, out: Path) -> dict:
    command = [sys.executable, __file__, "--child", mode, "--folder", str(folder),
               "--size", str(size), "--batch-size", str(batch_size), "--out", str(out)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if result.returncode:
        sys.exit(f"{mode} child failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--child", choices=["memory", "stream"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.folder, args.size, args.batch_size, args.out)
        return
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        folder = make_folder(Path(tmp) / "images", args.images)
        written = sum(f.stat().st_size for f in folder.rglob("*.jpg"))
        print(f"wrote {args.images} JPEGs of 256x256 ({written / 2**20:.0f} MB) in "
              f"{time.perf_counter() - start:.0f} s")  # fmt: skip
        results = {m: run_child(m, folder, args.size, args.batch_size, Path(tmp) / f"{m}.npy")
                   for m in ("memory", "stream")}  # fmt: skip
        same = np.array_equal(np.load(Path(tmp) / "memory.npy"), np.load(Path(tmp) / "stream.npy"))
    array = args.images * args.size**2 * 3
    print(f"frozen MobileNetV2 features of {args.images} images at {args.size} px "
          f"in batches of {args.batch_size} (the in-memory uint8 array alone: "
          f"{array / 2**20:.0f} MB):")  # fmt: skip
    for mode, r in results.items():
        print(f"  {mode:6s}  peak resident memory {r['peak'] / 2**20:5.0f} MB (TensorFlow and "
              f"the model before any image: {r['baseline'] / 2**20:.0f} MB), "
              f"{r['total_s']:3.0f} s (loading or scanning {r['load_s']:.1f} s)")  # fmt: skip
    ratio = results["memory"]["peak"] / results["stream"]["peak"]
    print(f"  ratio in memory / streaming: {ratio:.2f}")
    under = results["stream"]["peak"] < LIMIT_BYTES
    print(f"  streaming under 1.5 GB: {'yes' if under else 'NO'}")
    print(f"  same features from both: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main()
