"""Shared helpers for the fine-tuning companion notebooks.

TensorFlow reads its logging settings when it is first imported, so they are set here,
before any submodule imports it (otherwise TensorFlow's oneDNN notice leaks into
every notebook).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from ftutils.config import setup  # noqa: E402
from ftutils.errors import (  # noqa: E402
    BackboneError,
    DataError,
    DistributionError,
    WeightsUnavailableError,
)

__all__ = ["setup", "BackboneError", "DataError", "DistributionError", "WeightsUnavailableError"]
