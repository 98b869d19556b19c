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
import re
import warnings

#: The Keras and TensorFlow releases the book is tested with (requirements.txt), as
#: [lowest, first untested): Keras 3.12 and 3.13, which TensorFlow 2.21 accepts, cut a
#: classifier in two wrongly (``ftutils.frozen.cut``; ``make test-min`` shows it); TensorFlow
#: 2.19's ``decode_image`` cannot read WebP photos, which the command line takes.
TESTED_RANGES = {"keras": ((3, 14), (4,)), "tensorflow": ((2, 20), (2, 22))}


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


def check_versions(installed: dict[str, str] | None = None) -> None:
    """Refuse a Keras or TensorFlow older than the tested range; warn about a newer one.

    ``installed``: name -> version, by default the imported ``keras`` and ``tensorflow``.
    """
    if installed is None:
        import keras
        import tensorflow

        installed = {"keras": keras.__version__, "tensorflow": tensorflow.__version__}
    for name, version in installed.items():
        lowest, untested = TESTED_RANGES[name]
        release = tuple(int(part) for part in re.findall(r"\d+", version)[:3])
        if release < lowest:
            raise ImportError(
                f"ftutils needs {name} >= {'.'.join(map(str, lowest))}, and this Python has "
                f"{version}: run pip install -r requirements.txt (in the project folder) to "
                "install the tested versions"
            )
        if release >= untested:
            warnings.warn(
                f"{name} {version} is newer than the releases ftutils is tested with (below "
                f"{'.'.join(map(str, untested))}); if a notebook's result changes, compare with "
                "pip install -r requirements.txt",
                stacklevel=2,
            )


os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # read once, when TensorFlow is imported
_import_tensorflow_quietly()
check_versions()

from ftutils.config import setup  # noqa: E402
from ftutils.distribute import using  # noqa: E402
from ftutils.errors import (  # noqa: E402
    BackboneError,
    DataError,
    DistributionError,
    WeightsUnavailableError,
)

__all__ = [
    "setup",
    "using",
    "check_versions",
    "BackboneError",
    "DataError",
    "DistributionError",
    "WeightsUnavailableError",
]
