"""Check the README's offline file list against the Keras-cache files the notebooks used.

``make test`` runs the notebooks with ``FTUTILS_KERAS_FILES_LOG`` set to a folder, where each
kernel records the files it read from the Keras cache (:mod:`ftutils.downloads`); this script
then compares them with the list under the README's "Offline use" and fails, naming the files,
if a notebook used a file the list lacks or the list names one no notebook used.

    python scripts/check_offline_list.py build/keras-files [--readme README.md]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ftutils import downloads

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", type=Path, help="the folder the notebooks recorded into")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = parser.parse_args(argv)
    used = downloads.recorded(args.log) if args.log.is_dir() else set()
    if not used:
        print(f"no notebook recorded a Keras-cache file in {args.log}: were they run with "
              f"{downloads.RECORD_ENV} set?", file=sys.stderr)  # fmt: skip
        return 1
    listed = downloads.listed_in_readme(args.readme.read_text(encoding="utf-8"))
    missing, unused = sorted(used - listed), sorted(listed - used)
    for file in missing:
        print(f"used by a notebook but not in {args.readme.name}'s offline list: {file}",
              file=sys.stderr)  # fmt: skip
    for file in unused:
        print(f"in {args.readme.name}'s offline list but used by no notebook: {file}",
              file=sys.stderr)  # fmt: skip
    if missing or unused:
        return 1
    print(f"{args.readme.name}'s offline list matches the {len(used)} files the notebooks used")
    return 0


if __name__ == "__main__":
    sys.exit(main())
