"""ftutils.downloads: a stalled download fails in time, and the README's offline list is
checked against the Keras-cache files the notebooks record."""

import dataclasses
import socket
import threading
import time

import pytest

from ftutils import backbones, downloads
from ftutils.config import PROJECT_DIR, keras_home
from ftutils.errors import WeightsUnavailableError
from tests.script_loader import load_script

check_offline_list = load_script("check_offline_list")


@pytest.fixture
def stalled_server():
    """A server on 127.0.0.1 that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted = []
    thread = threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/"
    for connection, _ in accepted:
        connection.close()
    server.close()


def test_a_stalled_weights_download_fails_with_its_fix_and_the_timeout_is_put_back(
    stalled_server, monkeypatch
):
    stalled = dataclasses.replace(
        backbones.spec("mobilenet_v2"),
        weights_file="never_answered_no_top.h5",
        weights_url=stalled_server,
        weights_hash=None,
    )
    monkeypatch.setitem(backbones.BACKBONES, "stalled", stalled)
    monkeypatch.setenv("FTUTILS_DOWNLOAD_TIMEOUT", "1")
    before = socket.getdefaulttimeout()
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailableError, match="cannot be downloaded"):
        backbones.imagenet_weights_path("stalled")
    assert time.perf_counter() - start < 30  # without a timeout urllib waits for ever
    assert socket.getdefaulttimeout() == before
    assert not (keras_home() / "models" / "never_answered_no_top.h5").exists()


def test_kernels_record_the_keras_files_they_use_relative_to_the_cache(tmp_path, monkeypatch):
    log = tmp_path / "log"
    monkeypatch.setenv(downloads.RECORD_ENV, str(log))
    inside = keras_home() / "models" / "some_weights.h5"
    downloads.note_used(inside)  # a test process is not a kernel: nothing is recorded
    assert not log.exists()
    monkeypatch.setattr(downloads, "in_a_kernel", lambda: True)
    downloads.note_used(inside)
    downloads.note_used(tmp_path / "elsewhere.h5")  # not in the Keras cache: not recorded
    assert downloads.recorded(log) == {"models/some_weights.h5"}


def test_the_readme_lists_files_that_are_in_the_keras_cache():
    listed = downloads.listed_in_readme((PROJECT_DIR / "README.md").read_text(encoding="utf-8"))
    assert "datasets/fashion-mnist/train-images-idx3-ubyte.gz" in listed
    assert all(name.startswith(("models/", "datasets/")) for name in listed)
    missing = [name for name in listed if not (keras_home() / name).is_file()]
    assert not missing, f"the README lists files the offline cache lacks: {missing}"


def test_the_check_names_files_missing_from_the_list_and_files_no_notebook_used(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(
        "## Offline use\n\n    $KERAS_HOME/models/{a,b}.h5\n    $KERAS_HOME/datasets/d.gz\n\n"
        "## Next\n\n    $KERAS_HOME/models/not_in_the_section.h5\n"
    )
    log = tmp_path / "log"
    log.mkdir()
    (log / "1.txt").write_text("models/a.h5\ndatasets/d.gz\n")
    (log / "2.txt").write_text("models/b.h5\n")
    assert check_offline_list.main([str(log), "--readme", str(readme)]) == 0
    (log / "3.txt").write_text("models/c.h5\n")
    readme.write_text(readme.read_text().replace("{a,b}", "{a,b,z}"))
    assert check_offline_list.main([str(log), "--readme", str(readme)]) == 1
    err = capsys.readouterr().err
    assert "not in README.md's offline list: models/c.h5" in err
    assert "used by no notebook: models/z.h5" in err
    assert check_offline_list.main([str(tmp_path / "empty"), "--readme", str(readme)]) == 1
