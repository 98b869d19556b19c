"""``python -m ftutils``, end to end in a child process: finetune on a folder, predict, errors.

The folder is generated: three classes named in Chinese, each with its own colour and
stripes, plus a corrupt ``.jpg``, a greyscale and an RGBA image. At 32 px with a few epochs
a run takes seconds; the test accuracy of so small a test set is not judged, only reported.
"""

import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from ftutils import cli, data

ROOT = Path(__file__).resolve().parent.parent
CLASSES = {"猫": (200, 40, 40), "狗": (40, 170, 60), "鸟": (50, 70, 210)}  # colour of each
PER_CLASS = 12
FAST = ["--image-size", "32", "--head-epochs", "3", "--finetune-epochs", "2", "--head-lr", "0.01"]


def _picture(c: int, i: int, colour: tuple) -> Image.Image:
    """Class ``c``'s colour with stripes at its own angle (horizontal, vertical, diagonal),
    jittered by ``i`` so no two images are the same."""
    rng = np.random.default_rng(100 * c + i)
    size = 40 + 2 * i
    y, x = np.mgrid[:size, :size]
    stripes = ((y, x, x + y)[c] // 5) % 2
    pixels = np.asarray(colour) * (0.6 + 0.4 * stripes[..., None]) + rng.normal(
        0, 8, (size, size, 3)
    )
    return Image.fromarray(np.clip(pixels, 0, 255).astype("uint8"))


def _make_folder(root: Path) -> Path:
    for c, (name, colour) in enumerate(CLASSES.items()):
        (root / name).mkdir(parents=True)
        for i in range(PER_CLASS):
            picture = _picture(c, i, colour)
            picture.save(root / name / (f"{i:02d}.png" if i % 2 else f"{i:02d}.jpg"))
    (root / "猫" / "坏的.jpg").write_bytes(b"not a jpeg at all")
    _picture(1, 99, CLASSES["狗"]).convert("L").save(root / "狗" / "grey.png")
    _picture(2, 99, CLASSES["鸟"]).convert("RGBA").save(root / "鸟" / "rgba.png")
    return root


def _start(*args, prefix: Sequence[str] = (), env: dict | None = None) -> subprocess.Popen:
    """``python -m ftutils ARGS`` started in a child process (through ``prefix``, if any;
    ``env``: variables to set in it)."""
    return subprocess.Popen(
        [*prefix, sys.executable, "-m", "ftutils", *map(str, args)],
        cwd=ROOT,
        env={**os.environ, "PYTHONIOENCODING": "utf-8", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )


def _finish(child: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = child.communicate(timeout=300)
    return subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr)


def _ftutils(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m ftutils ARGS`` run to its end."""
    return _finish(_start(*args, env=env))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return _make_folder(tmp_path_factory.mktemp("images") / "动物")


@pytest.fixture(scope="module")
def run(folder, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One finetune run on the generated folder: its --out folder and its result. Its own
    ftutils cache: the images go through the frozen base, not through a cached result."""
    out = tmp_path_factory.mktemp("runs") / "动物"
    cold = {"FTUTILS_CACHE": str(tmp_path_factory.mktemp("ftutils-cache"))}
    result = _ftutils("finetune", folder, "--out", out, *FAST, env=cold)
    assert result.returncode == 0, result.stderr
    return out, result


def test_finetune_writes_the_model_classes_and_report(run, folder):
    out, result = run
    for name in ("model.keras", "classes.json", "report.md", "learning_curves.png",
                 "confusion_matrix.png", "run.json", "phases.json"):  # fmt: skip
        assert (out / name).is_file(), name
    classes = json.loads((out / "classes.json").read_text(encoding="utf-8"))
    assert classes == sorted(CLASSES)  # label order: the sorted folder names
    report = (out / "report.md").read_text(encoding="utf-8")
    accuracy = float(result.stdout.split("test accuracy: ")[1].split()[0])
    assert f"**Test accuracy: {accuracy:.3f}**" in report
    assert all(f"| {name} |" in report for name in CLASSES)  # per-class rows
    assert "python -m ftutils finetune" in report and "--image-size 32" in report
    assert f"| tensorflow | {__import__('tensorflow').__version__} |" in report
    assert "坏的.jpg" in report and "坏的.jpg" in result.stderr  # the skipped file is named
    assert "Epoch 1/3" in result.stdout  # the head's progress
    # and the extraction's: Keras' predict line (stdout is no terminal) for each set stored,
    # the training and validation images below the head and below the fine-tune's cut
    extraction = [line for line in result.stdout.splitlines()
                  if re.fullmatch(r"\d+/\d+ - \S+ - \S+/step", line.strip())]  # fmt: skip
    assert len(extraction) == 4, result.stdout
    all_right = "None: every test image was classified correctly" in report
    assert (out / "misclassified.png").is_file() != all_right

    model = keras.saving.load_model(out / "model.keras", compile=False)
    assert model.output_shape == (None, len(CLASSES)) and model.input_shape[1] == 32


def test_predict_prints_class_names_with_probabilities(run, folder):
    out, _ = run
    images = [folder / "猫" / "00.jpg", folder / "鸟" / "rgba.png"]
    result = _ftutils("predict", out / "model.keras", *images, "--top", "2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == str(images[0]) and lines[3] == str(images[1])
    shares = [line.split() for line in lines[1:3] + lines[4:6]]
    assert all(name in CLASSES and share.endswith("%") for share, name in shares)


def test_the_same_command_again_resumes_and_trains_nothing(run, folder):
    out, first = run
    again = _ftutils("finetune", folder, "--out", out, *FAST)
    assert again.returncode == 0, again.stderr
    assert "head: finished in an earlier run" in again.stdout
    assert "fine-tune: finished in an earlier run" in again.stdout
    assert "Epoch " not in again.stdout
    assert again.stdout.split("test accuracy: ")[1] == first.stdout.split("test accuracy: ")[1]


def _error(result: subprocess.CompletedProcess) -> str:
    """The one ``error:`` line of a failed command (exit status 2, no traceback)."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


@pytest.fixture(scope="module")
def failures(folder, tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """Each error case's command, all started at once (each ends within seconds)."""
    tmp = tmp_path_factory.mktemp("errors")
    (tmp / "a-file").write_text("")
    (tmp / "read-only").mkdir(mode=0o555)
    for name, count in (("大", 5), ("小", 2)):
        (tmp / "few" / name).mkdir(parents=True)
        for i in range(count):
            _picture(0, i, (90, 90, 90)).save(tmp / "few" / name / f"{i}.png")
    # root writes anywhere; without the capability to override file permissions it cannot
    as_user = (
        ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    )
    started = {
        "missing folder": _start("finetune", tmp / "nowhere", "--out", tmp / "out1", *FAST),
        "unknown backbone": _start("finetune", folder, "--backbone", "resnet9", "--out",
                                   tmp / "out2", *FAST),
        "small image size": _start("finetune", folder, "--image-size", "16", "--out",
                                   tmp / "out3"),
        "out under a file": _start("finetune", folder, "--out", tmp / "a-file" / "run", *FAST),
        "read-only out": _start("finetune", folder, "--out", tmp / "read-only" / "run", *FAST,
                                prefix=as_user),
        "too few images": _start("finetune", tmp / "few", "--out", tmp / "out4", *FAST),
        "out inside the images": _start("finetune", tmp / "few", "--out",
                                        tmp / "few" / "大" / "run", *FAST),
    }  # fmt: skip
    return {case: _finish(child) for case, child in started.items()}


def test_a_missing_folder_is_named(failures):
    error = _error(failures["missing folder"])
    assert "nowhere does not exist" in error and "one sub-folder per class" in error


def test_an_unknown_backbone_and_a_too_small_image_size(failures):
    error = _error(failures["unknown backbone"])
    assert "resnet9 is not a known backbone" in error and "mobilenet_v2" in error
    assert "below mobilenet_v2's minimum of 32 px" in _error(failures["small image size"])


def test_an_out_folder_that_cannot_be_written_is_refused_before_training(failures):
    for case in ("out under a file", "read-only out"):
        assert "cannot write into the --out folder" in _error(failures[case])
        assert "Epoch" not in failures[case].stdout
    assert "Permission denied" in _error(failures["read-only out"])


def test_an_out_folder_inside_the_image_folder_is_refused(failures):
    error = _error(failures["out inside the images"])
    assert "is inside the image folder" in error and "read as training images" in error


def test_a_class_too_small_to_split_says_how_many_are_needed(failures):
    error = _error(failures["too few images"])
    assert "class '小' has 2 image(s)" in error and "at least 3 images per class" in error


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        cli.main(["finetune", "--help"])
    shown = capsys.readouterr().out
    for flag, *_ in cli.FINETUNE_OPTIONS:
        assert flag in shown
    assert "resume" in shown and "BatchNormalization frozen" in shown


def test_unbalanced_classes_are_named_with_their_counts():
    def classes(*counts):
        labels = np.repeat(np.arange(len(counts)), counts)
        return data.ImageData(np.zeros((len(labels), 2, 2, 3), "uint8"), labels, ("猫", "狗", "鸟"))

    warning = data.imbalance(classes(12, 2, 5))
    assert "6.0 times" in warning and "猫 12, 狗 2, 鸟 5" in warning
    assert data.imbalance(classes(12, 3, 5)) is None
