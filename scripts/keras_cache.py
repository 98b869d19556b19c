"""Carry a prepared Keras cache (weights and datasets) to a machine that cannot download it.

    python scripts/keras_cache.py archive keras-cache.tar.gz     # on a machine that has it
    python scripts/keras_cache.py restore keras-cache.tar.gz     # on the machine that needs it

``archive`` packs ``$KERAS_HOME`` (else ``~/.keras``) with a SHA-256 list of every file;
``restore`` checks every file against that list before it puts the cache in place (into
``$KERAS_HOME``, else ``.cache/keras`` in the project) and prints the ``KERAS_HOME`` to use.
Files already in place are kept. A damaged or incomplete archive is refused, naming the file.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

CHECKSUMS = "SHA256SUMS"
#: Refuse members that would land outside the folder (Python 3.10.12+ / 3.11.4+).
SAFE_EXTRACT = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
PROJECT_CACHE = Path(__file__).resolve().parent.parent / ".cache" / "keras"


def sha256(path: Path) -> str:
    """Hex SHA-256 of one file, read in 1 MB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def archive(source: Path, target: Path) -> int:
    """Pack every file under ``source`` and their checksums into ``target`` (tar.gz)."""
    files = sorted(p for p in source.rglob("*") if p.is_file() and p.name != CHECKSUMS)
    if not files:
        sys.exit(f"{source} holds no files: run a notebook online first, or set KERAS_HOME.")
    lines = [f"{sha256(p)}  {p.relative_to(source).as_posix()}\n" for p in files]
    with tempfile.TemporaryDirectory() as tmp:
        checksums = Path(tmp) / CHECKSUMS
        checksums.write_text("".join(lines))
        with tarfile.open(target, "w:gz") as tar:
            tar.add(checksums, arcname=CHECKSUMS)
            for path in files:
                tar.add(path, arcname=path.relative_to(source).as_posix())
    print(f"{len(files)} files from {source} -> {target}")
    return len(files)


def restore(source: Path, target: Path) -> int:
    """Check ``source`` against its checksums, then copy its files missing from ``target``."""
    with tempfile.TemporaryDirectory() as tmp:
        unpacked = Path(tmp)
        try:
            with tarfile.open(source, "r:gz") as tar:
                tar.extractall(unpacked, **SAFE_EXTRACT)
        except (tarfile.TarError, EOFError, OSError) as exc:
            sys.exit(f"{source} is not a complete cache archive ({exc}); copy it again.")
        listed = unpacked / CHECKSUMS
        if not listed.is_file():
            sys.exit(f"{source} has no {CHECKSUMS}: make it with `{Path(__file__).name} archive`.")
        entries = [line.split("  ", 1) for line in listed.read_text().splitlines() if line]
        for expected, name in entries:
            path = unpacked / name
            if not path.is_file() or sha256(path) != expected:
                sys.exit(f"{name} in {source} is missing or damaged; copy the archive again.")
        copied = 0
        for _, name in entries:
            destination = target / name
            if not destination.exists():
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(unpacked / name, destination)
                copied += 1
    print(f"{len(entries)} files checked, {copied} copied into {target}")
    print(f"export KERAS_HOME={target}")
    return copied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["archive", "restore"])
    parser.add_argument("archive_path", type=Path, metavar="ARCHIVE")
    args = parser.parse_args()
    home = os.environ.get("KERAS_HOME")
    if args.action == "archive":
        archive(Path(home) if home else Path.home() / ".keras", args.archive_path)
    else:
        restore(args.archive_path, Path(home) if home else PROJECT_CACHE)


if __name__ == "__main__":
    main()
