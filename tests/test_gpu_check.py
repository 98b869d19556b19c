"""scripts/gpu_check.py (``make gpu-check``) without a GPU: it says so, runs nothing, exits 0.

The subprocess hides any GPU (``CUDA_VISIBLE_DEVICES=-1``), so the test is the same on a GPU
host and stays quick: the no-GPU path only lists devices.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu_check.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # imports no TensorFlow: that happens in main()
    return module


def test_without_a_gpu_it_says_so_and_exits_0():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "-1"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout  # nothing else ran
    assert lines[0].startswith("no GPU found: ['/physical_device:CPU:0'")
    assert lines[0].endswith("; nothing to check")


def test_force_cpu_defaults_to_small_sizes_and_explicit_values_win():
    gpu_check = _load_script()
    gpu = gpu_check.parse_args([])
    assert (gpu.image_size, gpu.per_class, gpu.test_images) == (160, 500, 2000)
    cpu = gpu_check.parse_args(["--force-cpu"])
    assert (cpu.image_size, cpu.per_class) == (96, 20)
    chosen = gpu_check.parse_args(["--force-cpu", "--image-size", "128", "--per-class", "5"])
    assert (chosen.image_size, chosen.per_class) == (128, 5)
