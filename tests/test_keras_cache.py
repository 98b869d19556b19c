"""scripts/keras_cache.py: a cache archived on one machine restores, checked, on another."""

import tarfile
from pathlib import Path

import pytest

from tests.script_loader import load_script

keras_cache = load_script("keras_cache")


def make_cache(root: Path) -> Path:
    (root / "models").mkdir(parents=True)
    (root / "datasets" / "fashion-mnist").mkdir(parents=True)
    (root / "models" / "weights.h5").write_bytes(b"weights" * 1000)
    (root / "datasets" / "fashion-mnist" / "labels.gz").write_bytes(b"labels")
    return root


def test_archive_then_restore_copies_every_file_and_keeps_existing_ones(tmp_path):
    source = make_cache(tmp_path / "source")
    archive = tmp_path / "cache.tar.gz"
    assert keras_cache.archive(source, archive) == 2
    target = tmp_path / "target"
    (target / "models").mkdir(parents=True)
    (target / "models" / "weights.h5").write_bytes(b"mine")
    assert keras_cache.restore(archive, target) == 1
    assert (target / "models" / "weights.h5").read_bytes() == b"mine"
    assert (target / "datasets" / "fashion-mnist" / "labels.gz").read_bytes() == b"labels"


def test_damaged_member_is_refused_by_name(tmp_path):
    source = make_cache(tmp_path / "source")
    archive = tmp_path / "cache.tar.gz"
    keras_cache.archive(source, archive)
    damaged = tmp_path / "damaged.tar.gz"
    with tarfile.open(archive) as original, tarfile.open(damaged, "w:gz") as copy:
        for member in original.getmembers():
            data = original.extractfile(member).read()
            if member.name == "models/weights.h5":
                data = data[:-1] + b"X"
            path = tmp_path / "member"
            path.write_bytes(data)
            copy.add(path, arcname=member.name)
    with pytest.raises(SystemExit, match="models/weights.h5 .* missing or damaged"):
        keras_cache.restore(damaged, tmp_path / "target")
    assert not (tmp_path / "target").exists()


def test_truncated_archive_is_refused(tmp_path):
    source = make_cache(tmp_path / "source")
    archive = tmp_path / "cache.tar.gz"
    keras_cache.archive(source, archive)
    archive.write_bytes(archive.read_bytes()[:100])
    with pytest.raises(SystemExit, match="not a complete cache archive"):
        keras_cache.restore(archive, tmp_path / "target")
