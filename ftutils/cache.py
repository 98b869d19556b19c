"""One key for every cache the book keeps: features, pretrained weights, sweep results (§2.2).

A cached result is reused only when everything it was computed from is the same: the
values themselves (arrays by content, not by name), the code of the function that computed
it, and where it ran (library versions, replicas, precision policy). A teacher's re-run
after an upgrade recomputes; a bfloat16 or two-replica result never stands in for a
float32 one; editing a sweep's run function re-runs it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from ftutils import distribute


def environment() -> dict:
    """What a cached result depends on besides its inputs."""
    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "replicas": distribute.replicas(),
        "precision": keras.mixed_precision.global_policy().name,
    }


def key(*parts) -> str:
    """A 20-hex-digit hash of ``parts`` and :func:`environment`.

    Parts may be numbers, strings, None, lists, tuples, dicts (key order ignored), NumPy
    arrays (hashed by shape, dtype and bytes) and scalars (as numbers), dataclasses such as
    ``ImageData`` (by their fields), Keras variables (by value) and functions (by their own
    source code, not that of the functions they call). Anything else is refused rather
    than keyed by a ``repr`` that may hide a change.
    """
    digest = hashlib.sha256()
    for part in (*parts, environment()):
        _update(digest, part)
    return digest.hexdigest()[:20]


def architecture(model: keras.Model) -> list:
    """What ``model`` computes besides its weights: every leaf layer's class and config.

    Layer names (which Keras numbers as models are built) and trainable flags (which do not
    change a forward pass) are left out, so a rebuilt model keys alike; a changed layer, such
    as another input scaling, keys differently.
    """
    return [
        [type(layer).__name__, {k: v for k, v in layer.get_config().items()
                                if k not in ("name", "trainable")}]
        for layer in _leaf_layers(model)
    ]  # fmt: skip


def _leaf_layers(model: keras.Model) -> list[keras.Layer]:
    leaves = []
    for layer in model.layers:
        leaves += _leaf_layers(layer) if isinstance(layer, keras.Model) else [layer]
    return leaves


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(temporary_path)``, then move the file to ``path`` in one step.

    A reader (another notebook running at the same time, or a later run after an
    interrupted one) sees the whole file or none: never a half-written one. On a worker of
    a multi-worker cluster other than the chief (``distribute.is_chief``), ``write`` still
    runs, into a temporary folder that is then deleted: only the chief writes ``path``.
    """
    if not distribute.is_chief():
        with tempfile.TemporaryDirectory(prefix="ftutils-worker-") as folder:
            write(Path(folder) / path.name)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".tmp-{os.getpid()}-{path.name}")  # same suffixes as path
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _update(digest, value) -> None:
    if isinstance(value, keras.Variable):
        value = value.numpy()
    if isinstance(value, np.generic):
        value = value.item()  # np.int64(1) and 1 are the same setting
    if isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        digest.update(f"array{array.shape}{array.dtype}".encode())
        digest.update(array.tobytes())
    elif value is None or isinstance(value, bool | int | float | str):
        digest.update(json.dumps(value).encode())
    elif isinstance(value, list | tuple):
        digest.update(f"list{len(value)}".encode())
        for item in value:
            _update(digest, item)
    elif isinstance(value, dict):
        digest.update(f"dict{len(value)}".encode())
        for name in sorted(value, key=str):
            _update(digest, str(name))
            _update(digest, value[name])
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        digest.update(type(value).__name__.encode())
        _update(digest, {f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    elif callable(value):
        _update(digest, _source(value))
    else:
        raise TypeError(
            f"cannot key a cache on a {type(value).__name__}; pass plain values, arrays or "
            "dataclasses of them"
        )


def _source(function: Callable) -> str:
    """The function's source code, or its compiled code when the source is not available."""
    code = getattr(function, "__code__", None)
    try:  # a callable object is keyed by its class
        return inspect.getsource(function if code is not None else type(function))
    except (OSError, TypeError):
        if code is None:
            return type(function).__qualname__
        constants = [c for c in code.co_consts if not inspect.iscode(c)]
        return f"{code.co_code.hex()} {constants!r} {code.co_names!r}"
