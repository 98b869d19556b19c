"""Shared helpers for the fine-tuning companion notebooks.

TensorFlow reads its logging settings when it is first imported, so they are set here,
before any submodule imports it. TensorFlow 2.21 still writes its absl/oneDNN/CUDA start-up
notices straight to file descriptor 2 while importing, whatever the log level, so that one
import runs with descriptor 2 pointed at /dev/null. Set ``TF_CPP_MIN_LOG_LEVEL`` below 3
before importing ftutils to see those notices (e.g. when a GPU is not found).

TensorFlow turns its oneDNN CPU kernels on by default only on CPUs with AVX-512 extensions
(VNNI, BF16, AMX); on an AVX2-only CPU (a 2-core AMD EPYC, say) it falls back to Eigen's
kernels, which round differently from the oneDNN kernels the committed results were made with
(there a notebook's check against its committed study failed without oneDNN and passed with
it). ftutils asks for oneDNN on every CPU; set ``TF_ENABLE_ONEDNN_OPTS=0`` before importing
ftutils to compare (bench/onednn.py, docs/traps.md).
"""

import os


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with its C++ start-up notices silenced, unless logs were asked for."""
    if os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3") != "3":
        import tensorflow  # noqa: F401

        return
    saved_stderr = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
        os.close(devnull)


os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # read once, when TensorFlow is imported
_import_tensorflow_quietly()

from ftutils.config import setup  # noqa: E402
from ftutils.errors import (  # noqa: E402
    BackboneError,
    DataError,
    DistributionError,
    WeightsUnavailableError,
)

__all__ = ["setup", "BackboneError", "DataError", "DistributionError", "WeightsUnavailableError"]
