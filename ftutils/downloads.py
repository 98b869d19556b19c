"""What the book reads from the Keras cache: a timeout for stalled downloads, and a record of
every file used, which ``make test`` compares with the README's offline list.

Keras downloads weights and datasets with ``urllib`` and no timeout, so a connection that
stalls (a firewall that drops packets rather than refusing them) would hang a notebook for
ever; :func:`timeout` bounds every blocking network operation of the block instead.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from ftutils.config import keras_home

#: Seconds a download may wait for a connection or for its next bytes before it fails;
#: ``FTUTILS_DOWNLOAD_TIMEOUT`` overrides it.
DEFAULT_TIMEOUT_S = 60.0

#: A folder: when set, every Jupyter kernel appends the Keras-cache files it uses to a file
#: of its own there (``make test`` sets it for the notebooks, ``scripts/check_offline_list.py``
#: reads it).
RECORD_ENV = "FTUTILS_KERAS_FILES_LOG"


def timeout_s() -> float:
    """The download timeout in seconds: ``FTUTILS_DOWNLOAD_TIMEOUT``, else the default."""
    return float(os.environ.get("FTUTILS_DOWNLOAD_TIMEOUT", DEFAULT_TIMEOUT_S))


@contextlib.contextmanager
def timeout(seconds: float | None = None) -> Iterator[None]:
    """Within the block a socket that waits longer than ``seconds`` raises ``TimeoutError``;
    the process's default timeout is put back afterwards."""
    before = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s() if seconds is None else seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(before)


def note_used(path: Path | str) -> None:
    """Record that a notebook used ``path``, a file in the Keras cache (see :data:`RECORD_ENV`).

    Only Jupyter kernels record: the unit tests resolve stand-in files of their own.
    """
    folder = os.environ.get(RECORD_ENV)
    if not folder or not in_a_kernel():
        return
    try:
        relative = Path(path).resolve().relative_to(keras_home().resolve())
    except ValueError:  # a file outside the Keras cache (a path the caller gave)
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    with open(Path(folder) / f"{os.getpid()}.txt", "a", encoding="utf-8") as log:
        log.write(relative.as_posix() + "\n")


def in_a_kernel() -> bool:
    """Whether this process is a Jupyter kernel (IPython's shell of ``ipykernel``)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def recorded(folder: Path) -> set[str]:
    """Every file the kernels recorded in ``folder``, relative to the Keras cache."""
    return {
        line.strip()
        for log in Path(folder).glob("*.txt")
        for line in log.read_text(encoding="utf-8").splitlines()
        if line.strip()
    }


def expand_braces(pattern: str) -> list[str]:
    """``a{b,c}d{e,f}`` -> ``abde, abdf, acde, acdf``: the shell's brace expansion, unnested."""
    start = pattern.find("{")
    if start < 0:
        return [pattern]
    end = pattern.index("}", start)
    head, options, tail = pattern[:start], pattern[start + 1 : end].split(","), pattern[end + 1 :]
    return [head + option + rest for option in options for rest in expand_braces(tail)]


def listed_in_readme(text: str) -> set[str]:
    """The files the README's "Offline use" section lists, relative to the Keras cache: its
    indented lines that start with ``$KERAS_HOME/``, braces expanded."""
    section = text.split("## Offline use", 1)[1].split("\n## ", 1)[0]
    prefix = "$KERAS_HOME/"
    return {
        file
        for line in section.splitlines()
        if line.startswith("    ") and line.strip().startswith(prefix)
        for file in expand_braces(line.strip().split()[0].removeprefix(prefix))
    }
