"""One key for every cache the book keeps: features, pretrained weights, sweep results (§2.2).

A cached result is reused only when everything it was computed from is the same: the
values themselves (arrays by content, not by name), the code of the function that computed
it with the values bound to it and the data it reads, and where it ran (library versions,
replicas, precision policy). A teacher's re-run
after an upgrade recomputes; a bfloat16 or two-replica result never stands in for a
float32 one; editing a sweep's run function re-runs it.
"""

from __future__ import annotations

import builtins
import dataclasses
import dis
import functools
import hashlib
import importlib.metadata
import json
import os
import sys
import tempfile
import types
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

    Parts may be numbers, strings, None, paths, lists, tuples, dicts (key order ignored),
    NumPy arrays (hashed by shape, dtype and bytes) and scalars (as numbers), Keras
    variables (by value), and:

    - objects with a ``fingerprint()`` method, by what it returns (``ImageFiles``: every
      file's path, size and modification time), and other dataclasses (``ImageData``) by
      their fields;
    - Keras layers and models by their class, every layer's config and trainable flag
      (:func:`architecture`) and their variables (weights, BatchNormalization statistics,
      dropout seeds; not an optimizer's state); other Keras objects (optimizers, losses) by
      their class, config and variables;
    - functions by their compiled code and everything bound to it: defaults, the variables
      of a closure, a ``functools.partial``'s function, arguments and keywords, and the
      global names the code reads (a notebook's ``train`` array or ``DATASET`` string).
      Global functions and classes of the notebook or script that runs (``__main__``, or a
      file loaded by path such as ``studies.load_script``) are followed the same way;
      modules are left out, and functions and classes of imported packages (NumPy, Keras,
      ftutils...) are keyed by their name and the package's version, not their code;
    - a bound method by its function and its object, and a callable object by its class
      and its own state: both need an object the rules above can key.

    Anything else (a plain object, a set, a generator...) is refused with a TypeError
    naming it, rather than keyed by a ``repr`` or a source line that may hide a change.
    """
    return digest(*parts, environment())


def digest(*parts) -> str:
    """A 20-hex-digit hash of ``parts`` alone, keyed as :func:`key` keys them (which adds
    the environment): for a record that notes the environment beside it."""
    sha = hashlib.sha256()
    keyer = _Keyer(sha)
    for part in parts:
        keyer.update(part, "")
    return sha.hexdigest()[:20]


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


class _Keyer:
    """Feeds values into one digest; remembers the functions and classes being keyed, so a
    function that reaches itself through its globals is keyed once."""

    def __init__(self, digest):
        self.digest, self.active = digest, set()

    def tag(self, text: str) -> None:
        self.digest.update(text.encode())

    def update(self, value, where: str) -> None:
        """Key ``value``; ``where`` says what it is, for the error when it cannot be keyed."""
        if isinstance(value, keras.Variable):
            value = value.numpy()
        if isinstance(value, np.generic):
            value = value.item()  # np.int64(1) and 1 are the same setting
        if isinstance(value, np.ndarray):
            array = np.ascontiguousarray(value)
            self.tag(f"array{array.shape}{array.dtype}")
            self.digest.update(array.tobytes())
        elif value is None or isinstance(value, bool | int | float | str):
            self.digest.update(json.dumps(value).encode())
        elif isinstance(value, bytes):
            self.tag(f"bytes{len(value)}")
            self.digest.update(value)
        elif isinstance(value, Path):
            self.tag(f"path{json.dumps(str(value))}")
        elif isinstance(value, list | tuple):
            self.tag(f"list{len(value)}")
            for item in value:
                self.update(item, where)
        elif isinstance(value, dict):
            self.tag(f"dict{len(value)}")
            for name in sorted(value, key=str):
                self.update(str(name), where)
                self.update(value[name], where)
        elif isinstance(value, type):
            self.cls(value)
        elif isinstance(value, types.FunctionType):
            self.function(value)
        elif isinstance(value, functools.partial):
            self.tag("partial")
            self.update(value.func, where)
            self.update(value.args, f"an argument of {value!r}")
            self.update(value.keywords, f"a keyword of {value!r}")
        elif isinstance(value, types.MethodType):
            self.tag("method")
            self.update(value.__func__, where)
            self.update(value.__self__, f"the object of the method {value.__qualname__}")
        elif isinstance(value, types.BuiltinFunctionType | np.ufunc):
            self.library(value)
            bound = getattr(value, "__self__", None)  # a method of an object, such as rng.normal
            if bound is not None and not isinstance(bound, types.ModuleType):
                self.update(bound, f"the object of {value!r}")
        elif isinstance(value, types.ModuleType):
            self.tag(f"module {value.__name__}")
        else:
            self.instance(value, where)

    def instance(self, value, where: str) -> None:
        """An object, by its class and what it holds."""
        self.cls(type(value))
        if callable(getattr(value, "fingerprint", None)):
            self.update(value.fingerprint(), where)
        elif dataclasses.is_dataclass(value):
            fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
            self.update(fields, where)
        elif isinstance(value, keras.Layer):
            layers = _leaf_layers(value) if isinstance(value, keras.Model) else [value]
            for layer in layers:
                self.cls(type(layer))  # a custom layer's code
            self.update(architecture(value) if isinstance(value, keras.Model) else
                        _layer_config(value), where)  # fmt: skip
            self.update([layer.trainable for layer in layers], where)
            self.update(list(value.variables), where)
        elif hasattr(value, "get_config") and type(value).__module__.startswith("keras"):
            config = {k: v for k, v in value.get_config().items() if k != "name"}
            self.update(config, where)
            self.update(list(getattr(value, "variables", [])), where)
        else:
            shown = repr(value)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            article = "an" if type(value).__name__[0].lower() in "aeiou" else "a"
            raise TypeError(
                f"cannot key a cache on {article} {type(value).__name__} ({shown})"
                + (f", {where}" if where else "")
                + ": pass numbers, strings, arrays, dataclasses or Keras objects instead, or "
                "give its class a fingerprint() method that returns what results depend on"
            )

    def function(self, function: types.FunctionType) -> None:
        """Code, defaults, closure and the globals the code reads, in that order."""
        name = function.__qualname__
        if id(function) in self.active:
            self.tag(f"function {name} again")
            return
        self.active.add(id(function))
        code = function.__code__
        self.tag("function")
        self.code(code)
        self.update(function.__defaults__ or (), f"a default of {name}")
        self.update(function.__kwdefaults__ or {}, f"a keyword default of {name}")
        for variable, cell in zip(code.co_freevars, function.__closure__ or (), strict=True):
            self.update(variable, "")
            try:
                value = cell.cell_contents
            except ValueError:  # not assigned yet
                self.tag("empty")
                continue
            self.update(value, f"the variable {variable!r} that {name} closes over")
        for variable in sorted(_global_names(code)):
            if variable in function.__globals__:
                value = function.__globals__[variable]
            elif hasattr(builtins, variable):
                continue  # Python's own: part of the environment
            else:
                value = None  # not defined (yet): calling it would fail
            if isinstance(value, types.ModuleType):
                continue
            self.update(variable, "")
            if isinstance(value, types.FunctionType | type) and not _running(value):
                self.library(value)
            else:
                self.update(value, f"the global {variable!r} that {name} reads")

    def code(self, code: types.CodeType) -> None:
        self.tag(f"code{sys.version_info[:2]}")  # bytecode is Python's x.y's own
        self.digest.update(code.co_code)
        signature = (code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount,
                     code.co_flags, code.co_varnames, code.co_names, code.co_freevars)  # fmt: skip
        self.update(list(signature), "")
        for constant in code.co_consts:
            self.constant(constant)

    def constant(self, value) -> None:
        if isinstance(value, types.CodeType):
            self.code(value)
        elif isinstance(value, tuple | frozenset):
            items = sorted(value, key=repr) if isinstance(value, frozenset) else value
            self.tag(f"{type(value).__name__}{len(items)}")
            for item in items:
                self.constant(item)
        else:
            self.tag(f"{type(value).__name__}{json.dumps(repr(value))}")

    def cls(self, cls: type) -> None:
        """A class of the running code by its methods' code, any other by name and version."""
        if not _running(cls):
            self.library(cls)
            return
        if id(cls) in self.active:
            self.tag(f"class {cls.__qualname__} again")
            return
        self.active.add(id(cls))
        self.tag(f"class{json.dumps(cls.__qualname__)}")
        for base in cls.__bases__:
            self.cls(base)
        for name, member in sorted(vars(cls).items()):
            if name.startswith("__") and not isinstance(member, types.FunctionType):
                continue  # Python's bookkeeping (__dict__, __module__, __doc__...)
            if isinstance(member, staticmethod | classmethod):
                member = member.__func__
            if isinstance(member, property):
                member = [member.fget, member.fset]
            self.update(name, "")
            self.update(member, f"the member {name!r} of {cls.__qualname__}")

    def library(self, value) -> None:
        module = getattr(value, "__module__", None) or ""
        name = getattr(value, "__qualname__", value.__name__)
        self.tag(f"library{json.dumps([module, name, _version(module)])}")


def _running(value) -> bool:
    """Whether ``value`` was defined by the running notebook or script (``__main__``) or a file
    loaded by path, rather than by an imported package."""
    module = getattr(value, "__module__", None)
    return module == "__main__" or module not in sys.modules


def _global_names(code: types.CodeType) -> set[str]:
    """The global names the code (and the functions, lambdas and comprehensions inside it)
    reads."""
    names = {
        i.argval for i in dis.get_instructions(code) if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")
    }
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            names |= _global_names(constant)
    return names


def _layer_config(layer: keras.Layer) -> list:
    config = {k: v for k, v in layer.get_config().items() if k not in ("name", "trainable")}
    return [[type(layer).__name__, config]]


@functools.cache
def _version(module: str) -> str:
    """The version of the package ``module`` belongs to ("" if it has none: Python's own)."""
    package = module.split(".")[0]
    version = getattr(sys.modules.get(package), "__version__", None)
    try:
        return str(version or importlib.metadata.version(package))
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return ""


def changes(stored: dict, current: dict, prefix: str = "") -> list[str]:
    """What differs between two records of what a result depends on, one line per entry
    (``name: stored -> current``; ``versions.keras`` for an entry of a nested record), for
    an error that names it."""
    missing = "(not recorded)"
    lines = []
    for name in sorted(set(stored) | set(current)):
        before, now = stored.get(name, missing), current.get(name, missing)
        if isinstance(before, dict) and isinstance(now, dict):
            lines += changes(before, now, f"{prefix}{name}.")
        elif before != now:
            lines.append(f"{prefix}{name}: {_shown(before)} -> {_shown(now)}")
    return lines


def _shown(value) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 80 else text[:77] + "..."
