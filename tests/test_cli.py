"""``python -m ftutils``, end to end in a child process: finetune on a folder, predict, errors.

The folder is generated: three classes named in Chinese, each with its own colour and
stripes, plus a ``.jpg`` that is no image, one corrupt in its middle, a greyscale, an RGBA
and a WebP image. At 32 px with a few epochs a run takes seconds; the test accuracy of so
small a test set is not judged, only reported. Errors found before any work starts are
checked in this process (``cli.main``), the others in a child process.
"""

import argparse
import importlib.metadata
import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import keras
import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from ftutils import cli, data, run_report
from tests.script_loader import load_script

ROOT = Path(__file__).resolve().parent.parent
CLASSES = {"猫": (200, 40, 40), "狗": (40, 170, 60), "鸟": (50, 70, 210)}  # colour of each
PER_CLASS = 12
FAST = ["--image-size", "32", "--head-epochs", "3", "--finetune-epochs", "2", "--head-lr", "0.01",
        "--ensemble-heads", "2", "--ensemble-epochs", "4"]  # fmt: skip


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
    corrupt_in_the_middle = load_script("make_image_folder").corrupt_in_the_middle
    corrupt_in_the_middle(_picture(0, 98, (0, 0, 0)), root / "猫" / "中间坏的.jpg")
    _picture(1, 98, CLASSES["狗"]).save(root / "狗" / "photo.webp")
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
    # a few seconds alone; minutes on 2 cores shared with other jobs (load 10 or more)
    stdout, stderr = child.communicate(timeout=900)
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
                 "confusion_matrix.png", "run.json", "finetune/phases.json",
                 "ensemble/model.keras", "finetune/model.keras"):  # fmt: skip
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
    assert "中间坏的.jpg" in result.stderr  # corrupt inside: skipped, not met mid-epoch
    assert f"狗 {PER_CLASS + 2}" in result.stdout  # its greyscale and its WebP were read
    assert "Epoch 1/3" in result.stdout  # the head's progress
    # and the extraction's: Keras' predict line (stdout is no terminal) for each set stored,
    # the training and validation images below the head and below the fine-tune's cut
    extraction = [line for line in result.stdout.splitlines()
                  if re.fullmatch(r"\d+/\d+ - \S+ - \S+/step", line.strip())]  # fmt: skip
    assert len(extraction) == 4, result.stdout
    all_right = "None: every test image was classified correctly" in report
    assert (out / "misclassified.png").is_file() != all_right

    model = keras.saving.load_model(out / "model.keras", compile=False)
    assert model.output_shape == (None, len(CLASSES))


def test_auto_trains_both_recipes_and_says_which_won_and_why(run):
    out, result = run
    report = (out / "report.md").read_text(encoding="utf-8")
    chosen = re.search(r"^chosen: (ensemble|finetune), the highest validation accuracy \((\S+) "
                       r"against (ensemble|finetune) (\S+)\) on (\d+) validation images",
                       result.stdout, flags=re.MULTILINE)  # fmt: skip
    assert chosen, result.stdout
    assert chosen.group(1) != chosen.group(3) and float(chosen.group(2)) >= float(chosen.group(4))
    assert "## Which recipe, and why" in report
    rows = [line for line in report.splitlines()
            if line.startswith(("| ensemble |", "| finetune |"))]  # fmt: skip
    assert len(rows) == 2 and sum("| chosen |" in row for row in rows) == 1
    assert "95 % interval" in report and "Few images" in report  # 12 per class: few
    assert (
        "(95% interval " in result.stdout and "few images: the smallest class has" in result.stdout
    )


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
    assert "ensemble: finished in an earlier run" in again.stdout
    assert "finetune: finished in an earlier run" in again.stdout
    assert "Epoch " not in again.stdout and "training (" not in again.stdout
    assert f"the run in {out} finished earlier" in again.stdout  # says what it resumes
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
    assert "per replica" in shown  # --batch-size: a step takes it on every device


def test_unbalanced_classes_are_named_with_their_counts():
    def classes(*counts):
        labels = np.repeat(np.arange(len(counts)), counts)
        return data.ImageData(np.zeros((len(labels), 2, 2, 3), "uint8"), labels, ("猫", "狗", "鸟"))

    warning = data.imbalance(classes(12, 2, 5))
    assert "6.0 times" in warning and "猫 12, 狗 2, 鸟 5" in warning
    assert data.imbalance(classes(12, 3, 5)) is None


def _main_error(argv: Sequence, capsys) -> str:
    """The one ``error:`` line of ``cli.main(argv)`` run in this process: status 2, no
    traceback, nothing else on stderr but warnings about skipped files."""
    try:
        status = cli.main([str(arg) for arg in argv])
    except SystemExit as exc:  # argparse's own errors
        status = exc.code
    stderr = capsys.readouterr().err
    assert status == 2, stderr
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [
        ("--head-lr", "0", "--head-lr must be a learning rate above 0 and at most 1"),
        ("--head-lr", "-0.01", "--head-lr must be a learning rate above 0"),
        ("--finetune-lr", "nan", "--finetune-lr must be a learning rate above 0"),
        ("--finetune-lr", "inf", "--finetune-lr must be a learning rate above 0"),
        ("--image-size", "5000", "--image-size 5000 is above 512 px"),
        ("--batch-size", "0", "--batch-size must be between 1 and 1024, got 0"),
        ("--seed", "-1", "--seed must be between 0 and 4294967295, got -1"),
        ("--head-epochs", "-1", "--head-epochs must be between 0 and 1000"),
        ("--finetune-epochs", "100000", "--finetune-epochs must be between 0 and 1000"),
        ("--patience", "-2", "--patience must be between 0 and 1000"),
        ("--val-fraction", "nan", "--val-fraction and --test-fraction must each be above 0"),
        ("--test-fraction", "0.9", "leave images for training"),
        ("--head-lr", "fast", "argument --head-lr: invalid float value: 'fast'"),
        ("--recipe", "best", "--recipe best is not a recipe; choose one of: auto, ensemble, "),
        ("--budget-s", "0", "--budget-s must be a number of seconds above 0"),
        ("--budget-s", "nan", "--budget-s must be a number of seconds above 0"),
    ],
)
def test_a_bad_number_is_one_line_before_anything_is_written(option, value, named, tmp_path,
                                                             capsys):  # fmt: skip
    """Checked before the folder (here a missing one) and before --out is created."""
    out = tmp_path / "out"
    error = _main_error(["finetune", tmp_path / "nowhere", "--out", out, option, value], capsys)
    assert named in error
    assert not out.exists()


def test_a_mistyped_folder_is_named_before_out_or_the_weights_are_touched(
    tmp_path, capsys, monkeypatch
):
    looked_up = []
    monkeypatch.setattr(cli.backbones, "imagenet_weights_path", looked_up.append)
    out = tmp_path / "out"
    error = _main_error(["finetune", tmp_path / "nowhere", "--out", out, *FAST], capsys)
    assert "nowhere does not exist" in error
    assert not out.exists() and not looked_up


def test_a_damaged_run_json_is_one_line_saying_what_to_do(folder, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "run.json").write_text('{"settings": {"backbone": "mobi', encoding="utf-8")  # a kill
    error = _main_error(["finetune", folder, "--out", out, *FAST], capsys)
    assert f"{out / 'run.json'} is damaged" in error and f"delete {out} to start over" in error


def test_another_run_in_out_is_refused_naming_what_differs(run, folder, tmp_path, capsys):
    before = json.loads((run[0] / "run.json").read_text(encoding="utf-8"))
    assert set(before["environment"]) >= {"strategy", "precision", "tensorflow", "keras"}
    before["environment"]["tensorflow"] = "2.0.0"
    out = tmp_path / "out"
    out.mkdir()
    (out / "run.json").write_text(json.dumps(before), encoding="utf-8")
    error = _main_error(["finetune", folder, "--out", out, *FAST, "--image-size", "48"], capsys)
    assert "holds a run made with --image-size 32 (now 48), tensorflow 2.0.0 (now " in error
    assert "other images" not in error  # the same files, read at another size
    assert f"give another --out or delete {out}" in error


def test_a_resumed_run_says_from_which_candidate_phase_and_epoch(tmp_path):
    args = argparse.Namespace(head_epochs=20, finetune_epochs=10)
    out = tmp_path / "run"
    run = out / "finetune"
    run.mkdir(parents=True)
    names = ["ensemble", "finetune"]
    assert cli._resume_line(out, args, names) == f"resuming the run in {out}: ensemble goes on"
    (out / "ensemble").mkdir()
    (out / "ensemble" / "result.json").write_text("{}")
    line = cli._resume_line(out, args, names)
    assert line.endswith("ensemble finished earlier; finetune (head at epoch 1 of 20)")
    (run / "head" / "backup").mkdir(parents=True)
    (run / "head" / "backup" / "training_metadata.json").write_text('{"epoch": 3, "batch": -1}')
    assert cli._resume_line(out, args, names).endswith("(head after epoch 3 of 20)")
    (run / "phases.json").write_text('{"head": []}')
    (run / "fine-tune" / "backup").mkdir(parents=True)
    (run / "fine-tune" / "backup" / "training_metadata.json").write_text('{"epoch": 4}')
    expected = "finetune (head finished, fine-tune after epoch 4 of 10)"
    assert cli._resume_line(out, args, ["finetune"]) == f"resuming the run in {out}: {expected}"
    (run / "result.json").write_text("{}")
    assert "finished earlier" in cli._resume_line(out, args, names)


class _KilledWhileSaving:
    """A model whose save is interrupted half-way through its file."""

    def save(self, path):
        Path(path).write_bytes(b"half a model")
        raise KeyboardInterrupt


def test_a_kill_while_saving_leaves_the_files_from_before(tmp_path, monkeypatch):
    (tmp_path / "model.keras").write_bytes(b"the whole earlier model")
    with pytest.raises(KeyboardInterrupt):
        cli._save_model(tmp_path, _KilledWhileSaving(), ("猫", "狗"))
    assert (tmp_path / "model.keras").read_bytes() == b"the whole earlier model"

    def half_a_figure(figure, path, **kwargs):
        Path(path).write_bytes(b"half a png")
        raise KeyboardInterrupt

    (tmp_path / "curves.png").write_bytes(b"the earlier figure")
    monkeypatch.setattr(plt.Figure, "savefig", half_a_figure)
    with pytest.raises(KeyboardInterrupt):
        run_report._save(tmp_path / "curves.png", plt.subplots)
    plt.close("all")
    assert (tmp_path / "curves.png").read_bytes() == b"the earlier figure"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png", "model.keras"]


def test_the_report_names_ftutils_version_from_an_uninstalled_clone(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    project = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    version = re.search(r'^version = "(.+)"', project, flags=re.MULTILINE).group(1)
    assert run_report.ftutils_version().startswith(f"{version} (not installed; imported from ")


def test_predict_refuses_files_finetune_would_not_read(run, tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    error = _main_error(["predict", run[0] / "model.keras", notes], capsys)
    assert "notes.txt: not an image file finetune reads" in error and ".webp" in error


def test_predict_names_a_file_that_is_no_model(tmp_path, capsys):
    fake = tmp_path / "model.keras"
    fake.write_bytes(b"PK\x03\x04 half a zip")
    (tmp_path / "classes.json").write_text('["猫", "狗", "鸟"]', encoding="utf-8")
    image = tmp_path / "x.png"
    _picture(0, 0, (9, 9, 9)).save(image)
    error = _main_error(["predict", fake, image], capsys)
    assert f"{fake} is not a model finetune wrote" in error


def test_a_run_folder_that_cannot_be_resumed_is_one_line(folder, tmp_path, capsys, monkeypatch):
    """fine_tune refuses a damaged or foreign run folder with a ResumeError: the command
    reports it as a user error (exit 2, one line), not a traceback."""
    from ftutils.errors import ResumeError

    def refuse(args):
        raise ResumeError(f"{args.out}/phases.json is damaged:\ndelete it to start afresh")

    monkeypatch.setattr(cli, "finetune", refuse)
    assert cli.main(["finetune", str(folder), "--out", str(tmp_path / "out")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "phases.json is damaged: delete it" in lines[0], lines


def _unlabelled_folder(root: Path) -> Path:
    """Unlabelled images in no particular layout: loose files, a nested folder, a folder named
    like a class (its images check the pseudo-labels), a greyscale image and corrupt files."""
    (root / "nested" / "deeper").mkdir(parents=True)
    (root / "猫").mkdir()
    for c, colour in enumerate(CLASSES.values()):
        for i in range(4):
            _picture(c, 50 + i, colour).save(root / f"{c}-{i}.png")
            _picture(c, 60 + i, colour).save(root / "nested" / "deeper" / f"{c}-{i}.jpg")
    for i in range(3):
        _picture(0, 70 + i, CLASSES["猫"]).save(root / "猫" / f"{i}.png")
    _picture(1, 80, CLASSES["狗"]).convert("L").save(root / "grey.png")
    (root / "nested" / "broken.jpg").write_bytes(b"not a jpeg either")
    corrupt = load_script("make_image_folder").corrupt_in_the_middle
    corrupt(_picture(2, 81, (0, 0, 0)), root / "corrupt-inside.jpg")
    return root


@pytest.fixture(scope="module")
def forced(folder, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """``--recipe finetune --unlabelled DIR``: its --out folder and its result."""
    unlabelled = _unlabelled_folder(tmp_path_factory.mktemp("unlabelled") / "无标签")
    out = tmp_path_factory.mktemp("forced") / "finetune"
    cold = {"FTUTILS_CACHE": str(tmp_path_factory.mktemp("ftutils-cache-forced"))}
    extra = ["--recipe", "finetune", "--unlabelled", unlabelled]
    return out, _ftutils("finetune", folder, "--out", out, *FAST, *extra, env=cold)


def test_a_forced_recipe_is_the_only_one_trained(forced):
    out, result = forced
    assert result.returncode == 0, result.stderr
    assert "chosen: finetune, the highest validation accuracy (the only" in result.stdout
    assert not (out / "ensemble").exists() and "ensemble: training" not in result.stdout


@pytest.mark.parametrize("saved", ["model.keras", "ensemble/model.keras", "finetune/model.keras"])
def test_every_recipe_s_model_reloads_with_plain_keras(run, saved):
    """The chosen model and each candidate's, as the auto run wrote them."""
    model = keras.saving.load_model(run[0] / saved)  # standard Keras layers only
    assert model.output_shape == (None, len(CLASSES))
    assert model.input_shape[1] == 32  # --image-size, for either recipe


def test_unlabelled_images_self_train_with_corrupt_ones_skipped(forced):
    out, result = forced
    assert "broken.jpg" in result.stderr and "corrupt-inside.jpg" in result.stderr
    assert "then self-training with 28 unlabelled images" in result.stdout  # grey one included
    line = [x for x in result.stdout.splitlines() if x.startswith("self-training: ")][-1]
    assert re.search(r"(not )?kept: validation \S+ -> \S+", line), line
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "## Self-training on the unlabelled images (§4.5)" in report
    rows = [x for x in report.splitlines() if re.match(r"\| 0\.\d+ \| [12] \|", x)]
    assert len(rows) == 4  # two thresholds, two rounds each
    # Which images a round pseudo-labels depends on the run's arithmetic (under two replicas
    # and bfloat16 none of the three in 猫/ was picked): a row is checked only when one was,
    # and the note explaining the column comes with the first checked row
    checked = [x for x in rows if re.match(r"\| \S+ \| \S+ \| \d+ \| [01]\.\d{3} \|", x)]
    assert ("'Of them right'" in report) == bool(checked), report
    noted = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert noted["settings"]["recipe"] == "finetune"
    assert noted["settings"]["unlabelled"].endswith("无标签")


def test_unlabelled_images_in_a_folder_named_like_a_class_carry_it_for_checking(tmp_path, capsys):
    unlabelled = _unlabelled_folder(tmp_path / "无标签")
    files = cli._unlabelled_files(unlabelled, tmp_path / "images", tmp_path / "out")
    images = cli._unlabelled(files, unlabelled, sorted(CLASSES), skipped=[])
    assert "broken.jpg" in capsys.readouterr().err  # skipped, with a warning
    in_cat = np.array([Path(f).parent.name == "猫" for f in images.files])
    assert sum(in_cat) == 3 and len(images) == 28
    assert all(label == sorted(CLASSES).index("猫") for label in images.labels[in_cat])
    assert all(label == -1 for label in images.labels[~in_cat])


def test_unlabelled_folders_that_cannot_serve_are_one_line(folder, tmp_path, capsys):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "notes.txt").write_text("no images here")
    out = tmp_path / "out"
    error = _main_error(["finetune", folder, "--out", out, "--unlabelled", empty], capsys)
    assert f"--unlabelled {empty} holds no image files" in error
    error = _main_error(["finetune", folder, "--out", out, "--unlabelled", folder / "猫"], capsys)
    assert "overlap" in error
    error = _main_error(["finetune", folder, "--out", out, "--unlabelled", tmp_path / "no"],
                        capsys)  # fmt: skip
    assert "does not exist" in error
    assert not out.exists()
