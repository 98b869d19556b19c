"""Benchmark: peak memory of both phases of ``recipe.fine_tune`` on a large image folder (§4.4).

Writes 5,000 generated 256x256 JPEGs (5 classes, ``scripts/make_image_folder.py``'s
``picture``) into a temporary folder, split 90/10 into training and validation images, then
runs each measurement in a fresh child process with a cache folder of its own (nothing is
reused between them), MobileNetV2 at 224 px, batches of 32, one epoch:

- phase 1 (``head_epochs=1, finetune_epochs=0``: the pooled features of every image through
  the frozen base, then the head), once from ``data.load_image_folder`` (the folder decoded
  into one uint8 array) and once from ``data.scan_image_folder`` (files read and decoded
  batch by batch); both must train the same head;
- phase 2 (``head_epochs=0, finetune_epochs=1, unfreeze_from=--cut``) from the streamed
  files: the activations below the cut are computed once and, over ``fine_tune``'s memory
  budget (``frozen.MEMORY_BUDGET_BYTES``), written to a disk-backed array and read batch by
  batch (measured: 2,554 MB at the default cut and batch, 2,542 MB with batches of 16; the
  1.4 GB of activations are not in it, the fit of the network above the cut at 224 px is).

Prints each child's peak resident memory (``VmHWM``) beside TensorFlow's and the model's
before any image, whether the streamed phases stay under 1.5 GB, and how large the stored
activations are (what phase 2 held in memory before the budget).

Besides TensorFlow and the model (~750 MB here), the forward pass dominates what streaming
needs, and it grows with the batch (measured at 224 px: about +0.3 GB at 16, +0.6 GB at 32,
+1.15 GB at 64, ``extract_features``' default).

Not a timed test: run with ``make bench`` (KERAS_HOME must hold the MobileNetV2 weights);
about 25 minutes on 2 shared cores, most of it the forward passes and phase 2's epoch.
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
CUT = "block_3_expand"  # 56x56x24 activations per image at 224 px: 1.35 GB for 4,500 images
MODES = ("memory", "stream", "phase2")
LABELS = {
    "memory": "phase 1, images in memory",
    "stream": "phase 1, streamed",
    "phase2": "phase 2, streamed",
}


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


def child(mode: str, folder: Path, size: int, batch_size: int, cut: str, out: Path) -> None:
    """One measurement in this (fresh) process; its numbers as JSON on stdout."""
    import warnings

    from ftutils import config, data, frozen, models, recipe

    config.set_seed(0)
    model = models.build_classifier("mobilenet_v2", CLASSES, size)
    baseline = peak_rss_bytes()  # TensorFlow, Keras and the model, before any image
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        images = data.load_image_folder(folder, size) if mode == "memory" else (
            data.scan_image_folder(folder))  # fmt: skip
    loaded = time.perf_counter() - start
    train, val = data.split(images, 0.1, seed=0)
    phase2 = mode == "phase2"
    recipe.fine_tune(model, train, val, head_epochs=0 if phase2 else 1,
                     finetune_epochs=1 if phase2 else 0, unfreeze_from=cut,
                     batch_size=batch_size, patience=None)  # fmt: skip
    np.savez(out, *model.get_weights())
    lower = frozen.cut(model, cut if phase2 else "pool").lower
    print(json.dumps({"mode": mode, "images": len(images), "peak": peak_rss_bytes(),
                      "baseline": baseline, "load_s": loaded,
                      "stored": frozen.activation_bytes(lower, len(images)),
                      "budget": frozen.MEMORY_BUDGET_BYTES,
                      "total_s": time.perf_counter() - start}))  # fmt: skip


def run_child(mode: str, folder: Path, args: argparse.Namespace, out: Path) -> dict:
    command = [sys.executable, __file__, "--child", mode, "--folder", str(folder),
               "--size", str(args.size), "--batch-size", str(args.batch_size), "--cut", args.cut,
               "--out", str(out)]  # fmt: skip
    env = {**os.environ, "FTUTILS_CACHE": str(out.parent / f"cache-{mode}")}
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    if result.returncode:
        sys.exit(f"{mode} child failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--cut", default=CUT, help="phase 2 unfreezes from this layer")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.folder, args.size, args.batch_size, args.cut, args.out)
        return
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        folder = make_folder(Path(tmp) / "images", args.images)
        written = sum(f.stat().st_size for f in folder.rglob("*.jpg"))
        print(f"wrote {args.images} JPEGs of 256x256 ({written / 2**20:.0f} MB) in "
              f"{time.perf_counter() - start:.0f} s")  # fmt: skip
        results = {m: run_child(m, folder, args, Path(tmp) / f"{m}.npz") for m in MODES}
        weights = [np.load(Path(tmp) / f"{m}.npz") for m in ("memory", "stream")]
        same = all(np.array_equal(weights[0][k], weights[1][k]) for k in weights[0].files)
    array = args.images * args.size**2 * 3
    print(f"fine_tune of MobileNetV2 on {args.images} images at {args.size} px, batches of "
          f"{args.batch_size}, one epoch per phase (the images as one uint8 array: "
          f"{array / 2**20:.0f} MB):")  # fmt: skip
    for mode, r in results.items():
        print(f"  {LABELS[mode]:27s} peak resident memory {r['peak'] / 2**20:5.0f} MB "
              f"(TensorFlow and the model: {r['baseline'] / 2**20:.0f} MB), "
              f"{r['total_s']:4.0f} s")  # fmt: skip
    stored = results["phase2"]["stored"]
    budget = results["phase2"]["budget"]
    on_disk = stored > budget
    print(f"  phase 2's activations below {args.cut}: {stored / 2**20:.0f} MB, "
          f"{'on disk (over' if on_disk else 'in memory (within'} the "
          f"{budget / 2**20:.0f} MB budget)")  # fmt: skip
    for mode in ("stream", "phase2"):
        under = results[mode]["peak"] <= LIMIT_BYTES
        print(f"  {LABELS[mode]} under 1.5 GB: {'yes' if under else 'NO'}")
    ratio = results["memory"]["peak"] / results["stream"]["peak"]
    print(f"  phase 1 peak, in memory / streamed: {ratio:.2f}")
    print(f"  same head from both: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main()
