"""``python -m ftutils``: the article's §4.4 workflow on a reader's own image folder.

``finetune FOLDER`` checks and splits the folder, runs the book's recipe
(:func:`ftutils.recipe.fine_tune`: a new head on features of the frozen base computed once,
then the base's top block fine-tuned with BatchNormalization frozen, both phases stopped
early on validation loss) and writes the model and a report (:mod:`ftutils.run_report`)
into ``--out``; the same command again resumes an interrupted run. ``predict MODEL
IMAGES...`` prints each image's most likely classes. A problem the user can fix prints one
line ``error: ...`` on stderr and exits with status 2; every such check comes before the
first side effect (the ``--out`` folder, a weights download). Every file written goes to a
temporary name first and is renamed, so a kill never leaves half a file.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import math
import os
import shlex
import sys
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from ftutils import (
    backbones,
    cache,
    config,
    data,
    distribute,
    frozen,
    models,
    recipe,
    run_report,
    training,
)
from ftutils.errors import (
    BackboneError,
    DataError,
    DistributionError,
    ResumeError,
    WeightsUnavailableError,
)

#: The exit status for an error in the command's arguments or files.
USAGE_ERROR = 2

#: Errors that name their fix, printed as one line instead of a traceback.
USER_ERRORS = (DataError, BackboneError, WeightsUnavailableError, DistributionError, ResumeError)

#: The three parts of the reader's images, in the order ``data.three_way_split`` returns them.
PARTS = ("train", "validation", "test")

#: In ``--out``: what the run was made with and from, compared when the same folder is reused.
RUN_FILE = "run.json"

#: --image-size's upper bound: about twice the 224 px the ImageNet weights were learned at.
#: Memory and time grow with the square of the side (a batch of 32 images at 1024 px is 400 MB
#: of float32 before the first layer), while a base trained at 224 px gains little from more.
MAX_IMAGE_SIZE = 512

#: The whole-number options' bounds: at least, at most. A seed must fit NumPy's 32 bits.
BOUNDS = {"head_epochs": (0, 1000), "finetune_epochs": (0, 1000), "patience": (0, 1000),
          "batch_size": (1, 1024), "seed": (0, 2**32 - 1), "ensemble_heads": (1, 100),
          "ensemble_epochs": (1, 10000)}  # fmt: skip


class UsageError(ValueError):
    """An argument or file of the command that cannot be used as given."""


class _Parser(argparse.ArgumentParser):
    """argparse's parser, but a malformed argument prints one ``error:`` line (not the usage
    lines too) and exits with status 2."""

    def error(self, message: str):
        self.exit(USAGE_ERROR, f"error: {message}; see {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``finetune`` and ``predict`` commands and every option, with their help."""
    parser = _Parser(
        prog="python -m ftutils",
        description="Fine-tune a pretrained image classifier on your own folder of images "
        "(the article's §4.4 workflow), then classify new images with it.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    _add_finetune(commands)
    _add_predict(commands)
    return parser


#: ``finetune``'s options: flag, type, metavar, default, help (which gets the default added).
FINETUNE_OPTIONS = (
    ("--backbone", str, "NAME", "mobilenet_v2", "the pretrained base, with ImageNet weights "
     f"(downloaded once when online and not in the Keras cache): {', '.join(recipe.TOP_BLOCK)}"),
    ("--image-size", int, "PIXELS", recipe.ENSEMBLE_IMAGE_SIZE, "the square size in pixels every "
     "image is resized to, for every recipe (the book's default task measures them at "
     f"{recipe.ENSEMBLE_IMAGE_SIZE}); at least the backbone's minimum (32 for most), at most "
     f"{MAX_IMAGE_SIZE}"),
    ("--out", Path, "DIR", None, "the folder for the model, the report and the training state, "
     "created if needed; the same command again resumes (default: runs/<FOLDER's name>)"),
    ("--head-epochs", int, "N", 20, "at most this many epochs for the new head, trained on the "
     "frozen base's features"),
    ("--finetune-epochs", int, "N", 10, "at most this many epochs fine-tuning the top of the base; "
     "0 stops after the head (feature extraction only)"),
    ("--unfreeze-from", str, "LAYER", None, "the base layer from which on fine-tuning trains "
     "(default: the first layer of the base's last block: "
     + ", ".join(f"{name} {layer}" for name, layer in recipe.TOP_BLOCK.items()) + ")"),
    ("--head-lr", float, "RATE", 1e-3, "Adam's learning rate for the head, above 0 and at most 1"),
    ("--finetune-lr", float, "RATE", 1e-4, "Adam's learning rate for fine-tuning, lower than the "
     "head's so the pretrained weights change little; above 0 and at most 1"),
    ("--batch-size", int, "N", 32, "images per training step on each device (per replica): "
     "with several GPUs a step takes this many on every one"),
    ("--val-fraction", float, "F", 0.15, "the share of each class for validation: early stopping "
     "and each phase's best epoch are chosen on it"),
    ("--test-fraction", float, "F", 0.15, "the share of each class for the test set, used for "
     "nothing but the report's scores"),
    ("--seed", int, "N", 0, "the seed of the split, the head's first weights and the batch order"),
    ("--patience", int, "N", 3, "stop a phase after this many epochs without a lower validation "
     "loss; its best epoch is kept"),
    ("--ensemble-heads", int, "N", recipe.ENSEMBLE_HEADS, "the ensemble's heads (averaged), "
     "and the self-training's"),
    ("--ensemble-epochs", int, "N", 300, "at most this many epochs for each of the ensemble's "
     "heads (and the self-training's), each stopped after 15 without a lower validation loss"),
    ("--recipe", str, "NAME", "auto", "which recipe trains the model: 'ensemble' (the book's "
     "default: multi-depth features of the frozen mobilenet_v2 and mobilenet, "
     f"{recipe.ENSEMBLE_HEADS} heads averaged; --backbone and the epoch, rate and patience "
     "options do not apply to it), 'finetune' (the two-phase fine-tune of --backbone), or "
     "'auto': both, the book's default first, keeping the one with the higher validation "
     "accuracy (never looking at the test images; a tie keeps the first)"),
    ("--budget-s", float, "SECONDS", None, "with --recipe auto: once the candidates trained so "
     "far took this long, skip the later ones (default: no limit)"),
    ("--unlabelled", Path, "DIR", None, "a folder of images without labels (any layout, outside "
     "FOLDER) for self-training (§4.5) on top of the chosen recipe: confident predictions become "
     "labels for a few rounds, the confidence threshold chosen on validation, and the result kept "
     "only if validation accuracy improves; images in a sub-folder named like a class are "
     "used to check the pseudo-labels, never to train"),
)  # fmt: skip

#: ``--recipe``'s choices.
RECIPES = ("auto", "ensemble", "finetune")

#: Below this many images in the smallest class, the command says how few images its
#: validation and test scores rest on and how uncertain the test score is.
FEW_PER_CLASS = run_report.FEW_PER_CLASS


def _add_finetune(commands) -> None:
    sub = commands.add_parser(
        "finetune",
        help="train a classifier on an image folder and write a report",
        description="Split FOLDER into training, validation and test images (stratified), "
        "then train the book's recipes (--recipe auto): first the feature ensemble (multi-depth "
        "features of two frozen ImageNet bases, several heads averaged), then the two-phase "
        "fine-tune (a new head on the frozen base's features, then the base's top block with "
        "BatchNormalization frozen, both with early stopping on the validation loss), and keep "
        "the one with the higher validation accuracy; with --unlabelled, self-train on top of "
        "it. Write model.keras, classes.json and report.md (which recipe won and why, every "
        "candidate's validation score and time, the test score) into --out. Run the same "
        "command again to resume an interrupted run: a finished candidate is not trained again.",
    )
    sub.add_argument(
        "folder",
        type=Path,
        metavar="FOLDER",
        help="one sub-folder of images per class, named after its class "
        "(FOLDER/cat/*.jpg, FOLDER/dog/*.png, ...)",
    )
    for flag, kind, metavar, default, text in FINETUNE_OPTIONS:
        shown = "" if default is None or flag == "--budget-s" else " (default: %(default)s)"
        sub.add_argument(flag, type=kind, metavar=metavar, default=default, help=text + shown)
    sub.set_defaults(run=finetune)


def _add_predict(commands) -> None:
    sub = commands.add_parser(
        "predict",
        help="classify images with a model written by finetune",
        description="Print the most likely classes of each image, with their probabilities. "
        "The class names come from classes.json beside the model.",
    )
    sub.add_argument("model", type=Path, metavar="MODEL", help="a model.keras written by finetune")
    sub.add_argument(
        "images",
        type=Path,
        nargs="+",
        metavar="IMAGE",
        help=f"image files ({', '.join(sorted(data.IMAGE_EXTENSIONS))}: what finetune reads)",
    )
    sub.add_argument(
        "--top",
        type=int,
        default=3,
        help="how many classes to print per image (default: %(default)s)",
    )
    sub.set_defaults(run=predict)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return the exit status (2 for an error the user can fix)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.command_line = shlex.join(["python", "-m", "ftutils", *argv])
    try:
        args.run(args)
    except (UsageError, *USER_ERRORS) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130
    return 0


def finetune(args: argparse.Namespace) -> None:
    """Check everything that can be checked, then train (or resume), choose, evaluate and
    report."""
    _check_arguments(args)
    args.unfreeze_from = args.unfreeze_from or recipe.TOP_BLOCK[args.backbone]
    out = args.out or Path("runs") / args.folder.resolve().name
    _check_out(out, args.folder)
    data.count_image_files(args.folder)  # a missing folder or class folder, before TF starts
    unlabelled_files = _unlabelled_files(args.unlabelled, args.folder, out)
    before = _noted_run(out)
    config.setup(args.seed, verbose=False)  # strategy, precision, seeds: before any TF op
    images, files, skipped = _load_folder(args.folder, args.image_size)
    split = data.three_way_split(images, args.val_fraction, args.test_fraction, args.seed)
    parts = {name: images.take(indices) for name, indices in zip(PARTS, split, strict=True)}
    unlabelled = _unlabelled(unlabelled_files, args.unlabelled, images.class_names, skipped)
    noted = _run_identity(args, images, files, unlabelled)
    _check_same_run(out, before, noted)
    names = _candidate_names(args.recipe)
    for backbone in _backbones_needed(args, names):  # may download: after every check of input
        backbones.imagenet_weights_path(backbone)
    if "finetune" in names and args.finetune_epochs:
        _check_cut(models.build_classifier(args.backbone, images.n_classes, args.image_size),
                   args.unfreeze_from)  # fmt: skip
    _start_run(out, noted)
    notes = list(skipped)  # for the report
    if (unbalanced := data.imbalance(images)) is not None:
        print(f"warning: {unbalanced}", file=sys.stderr)
        notes.append(unbalanced)
    _print_plan(args, images, parts, skipped, names, unlabelled)
    if before is not None:
        print(_resume_line(out, args, names))
    verbose = 1 if sys.stdout.isatty() else 2  # progress bars in a terminal, else lines
    model, choice = recipe.auto(
        parts["train"], parts["validation"], unlabelled,
        candidates=[_candidate(name, args, images.n_classes, verbose) for name in names],
        budget_s=args.budget_s, run_dir=out, seed=args.seed, log=print,
        self_training_heads=args.ensemble_heads, self_training_epochs=args.ensemble_epochs,
    )  # fmt: skip
    _save_model(out, model, images.class_names)
    test_files = [files[i] for i in split[2]]
    run = run_report.Run(args.command_line, args.folder, _settings(args), parts, test_files, notes,
                         choice)  # fmt: skip
    accuracy = run_report.write(out, model, choice.record, run)
    chosen = choice.chosen
    print(f"chosen: {chosen.name}, {chosen.why}")
    if choice.self_training is not None:
        print(f"self-training: {choice.self_training.why}")
    n_test = len(parts["test"])
    low, high = run_report.wilson_interval(round(accuracy * n_test), n_test)
    print(f"test accuracy: {accuracy:.3f} on {n_test} images (95% interval {low:.3f}-{high:.3f})")
    if images.class_counts().min() < FEW_PER_CLASS:
        print(
            f"few images: the smallest class has {images.class_counts().min()}, so the choice "
            f"rests on {len(parts['validation'])} validation images and the test score on "
            f"{n_test}: read the interval, not the score alone"
        )
    print(f"wrote {out / 'model.keras'}, {out / 'classes.json'} and {out / 'report.md'}")
    print(f"classify new images with: python -m ftutils predict {out / 'model.keras'} IMAGE...")


def _candidate_names(choice: str) -> list[str]:
    """The candidates ``--recipe`` trains, the book's default recipe first."""
    return ["ensemble", "finetune"] if choice == "auto" else [choice]


def _backbones_needed(args: argparse.Namespace, names: list[str]) -> list[str]:
    needed = list(recipe.ENSEMBLE_BACKBONES) if "ensemble" in names else []
    return needed + ([args.backbone] if "finetune" in names and args.backbone not in needed else [])


def _candidate(name: str, args: argparse.Namespace, n_classes: int, verbose: int):
    """One ``recipe.Candidate`` with the command's options."""
    if name == "ensemble":
        return recipe.ensemble_candidate(n_classes, args.seed, image_size=args.image_size,
                                         heads=args.ensemble_heads,
                                         epochs=args.ensemble_epochs)  # fmt: skip
    return recipe.finetune_candidate(
        n_classes, args.backbone, args.image_size, head_epochs=args.head_epochs,
        finetune_epochs=args.finetune_epochs, head_lr=args.head_lr,
        finetune_lr=args.finetune_lr, unfreeze_from=args.unfreeze_from, patience=args.patience,
        batch_size=args.batch_size, seed=args.seed, verbose=verbose,
    )  # fmt: skip


def _unlabelled_files(folder: Path | None, images: Path, out: Path) -> list[Path]:
    """Every file with an image extension under ``--unlabelled`` (any layout), listed, not
    opened; one error line when the folder cannot serve."""
    if folder is None:
        return []
    if not folder.is_dir():
        raise UsageError(f"--unlabelled {folder} does not exist (or is not a folder); give a "
                         "folder of images without labels")  # fmt: skip
    inside = folder.resolve().is_relative_to(images.resolve())
    if inside or images.resolve().is_relative_to(folder.resolve()):
        raise UsageError(
            f"--unlabelled {folder} and the image folder {images} overlap: labelled (and test) "
            "images would be taken as unlabelled ones, or the other way round; give a "
            "separate folder"
        )
    if out.resolve().is_relative_to(folder.resolve()):
        raise UsageError(
            f"--out {out} is inside the --unlabelled folder {folder}: its report "
            "images would be read as unlabelled images; give a folder outside it"
        )
    found = sorted(p for p in folder.rglob("*")
                   if p.suffix.lower() in data.IMAGE_EXTENSIONS and p.is_file())  # fmt: skip
    if not found:
        raise UsageError(
            f"--unlabelled {folder} holds no image files "
            f"({', '.join(sorted(data.IMAGE_EXTENSIONS))}); give a folder of images"
        )
    return found


def _unlabelled(
    files: list[Path], folder: Path | None, class_names: Sequence[str], skipped: list[str]
) -> data.ImageFiles | None:
    """The readable unlabelled images as ImageFiles, read batch by batch when used; labels -1,
    or a class for an image in a sub-folder named like that class (only to check
    pseudo-labels). Unreadable files are skipped with a warning line each."""
    if folder is None:
        return None
    good, labels = [], []
    for file in files:
        try:
            data.read_image(file, 8)
        except DataError:
            message = f"skipping {file}: {data.UNREADABLE}"
            print(f"warning: {message}", file=sys.stderr)
            skipped.append(message)
            continue
        good.append(str(file))
        parent = file.parent.name
        labels.append(class_names.index(parent) if parent in class_names else -1)
    if not good:
        raise UsageError(
            f"--unlabelled {folder}: none of its {len(files)} image files can be "
            "read (corrupt or another format); give a folder of images"
        )
    return data.ImageFiles(np.array(good), np.array(labels), tuple(class_names))


def _save_model(out: Path, model: keras.Model, class_names: Sequence[str]) -> None:
    """``model.keras`` and ``classes.json``, each written whole or not at all."""
    cache.write_atomically(out / "model.keras", model.save)
    _write_json(out / "classes.json", list(class_names))


def _write_json(path: Path, value) -> None:
    """``value`` as UTF-8 JSON in ``path``, written to a temporary name and renamed."""
    text = json.dumps(value, ensure_ascii=False, indent=1)
    cache.write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def predict(args: argparse.Namespace) -> None:
    """Print the ``--top`` classes of every image, most likely first."""
    classes_file = args.model.with_name("classes.json")
    for path, what in ((args.model, "model"), (classes_file, "class names file")):
        if not path.is_file():
            raise UsageError(
                f"{what} {path} does not exist; give the model.keras that "
                "finetune wrote (classes.json lies beside it)"
            )
    if args.top < 1:
        raise UsageError(f"--top must be at least 1, got {args.top}")
    missing = [str(path) for path in args.images if not path.is_file()]
    if missing:
        raise UsageError(f"image file(s) not found: {', '.join(missing)}")
    other = [str(path) for path in args.images if path.suffix.lower() not in data.IMAGE_EXTENSIONS]
    if other:
        raise UsageError(
            f"{', '.join(other)}: not an image file finetune reads; give "
            f"{', '.join(sorted(data.IMAGE_EXTENSIONS))} files"
        )
    try:
        names = json.loads(classes_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        names = None
    if not isinstance(names, list):
        raise UsageError(
            f"{classes_file} is damaged (not the list of class names finetune writes); "
            "run finetune again with the same command to write it again"
        )
    try:
        model = keras.saving.load_model(args.model, compile=False)
    except (ValueError, OSError, zipfile.BadZipFile):  # another file, or one cut short
        raise UsageError(
            f"{args.model} is not a model finetune wrote (another file, or a damaged one); "
            "give the model.keras in finetune's --out folder, or run finetune again"
        ) from None
    if len(names) != model.output_shape[-1]:
        raise UsageError(
            f"{classes_file} names {len(names)} classes but the model predicts "
            f"{model.output_shape[-1]}; keep the classes.json finetune wrote"
        )
    size = model.input_shape[1]
    batch = np.stack([data.read_image(path, size) for path in args.images]).astype("float32")
    probabilities = model.predict(batch, verbose=0)
    for path, p in zip(args.images, probabilities, strict=True):
        print(path)
        for k in np.argsort(-p)[: args.top]:
            print(f"  {p[k]:6.1%}  {names[k]}")


def _check_arguments(args: argparse.Namespace) -> None:
    """Fail on a backbone, size, count, rate or fraction that cannot work, before any work
    starts."""
    if args.backbone not in recipe.TOP_BLOCK:
        why = (
            "has no ImageNet weights to fine-tune from"
            if args.backbone in backbones.BACKBONES
            else "is not a known backbone"
        )
        raise UsageError(
            f"--backbone {args.backbone} {why}; choose one of: {', '.join(recipe.TOP_BLOCK)}"
        )
    smallest = backbones.spec(args.backbone).min_size
    if args.image_size < smallest:
        raise UsageError(
            f"--image-size {args.image_size} is below {args.backbone}'s minimum of "
            f"{smallest} px; use --image-size {smallest} or more (the default is "
            f"{recipe.ENSEMBLE_IMAGE_SIZE})"
        )
    if args.image_size > MAX_IMAGE_SIZE:
        raise UsageError(
            f"--image-size {args.image_size} is above {MAX_IMAGE_SIZE} px: memory and time grow "
            "with its square and the ImageNet weights were learned at 224 px; use "
            f"{MAX_IMAGE_SIZE} or less (e.g. {recipe.ENSEMBLE_IMAGE_SIZE} or 224)"
        )
    for option, (low, high) in BOUNDS.items():
        if not low <= getattr(args, option) <= high:
            raise UsageError(
                f"--{option.replace('_', '-')} must be between {low} and {high}, "
                f"got {getattr(args, option)}"
            )
    for option, example in (("head_lr", "1e-3"), ("finetune_lr", "1e-4")):
        rate = getattr(args, option)
        if not (math.isfinite(rate) and 0 < rate <= 1):
            raise UsageError(
                f"--{option.replace('_', '-')} must be a learning rate above 0 and at most 1 "
                f"(e.g. {example}), got {rate}"
            )
    if args.recipe not in RECIPES:
        raise UsageError(
            f"--recipe {args.recipe} is not a recipe; choose one of: "
            f"{', '.join(RECIPES)} (auto: the better of the others on validation)"
        )
    if args.budget_s is not None and not (math.isfinite(args.budget_s) and args.budget_s > 0):
        raise UsageError(f"--budget-s must be a number of seconds above 0 (e.g. 600), got "
                         f"{args.budget_s}")  # fmt: skip
    val, test = args.val_fraction, args.test_fraction
    if not (0 < val < 1 and 0 < test < 1 and val + test < 1):
        raise UsageError(
            "--val-fraction and --test-fraction must each be above 0 and below 1 and leave "
            f"images for training (together below 1), got {val} and {test}; e.g. 0.15 and 0.15"
        )


def _check_out(out: Path, images: Path) -> None:
    """Fail when ``out`` cannot hold the run, without creating it: inside the image folder
    (the report's PNGs would become training images of the next run), a file, or below a
    folder that cannot be written."""
    if out.resolve().is_relative_to(images.resolve()):
        raise UsageError(
            f"--out {out} is inside the image folder {images}: its report images would be "
            f"read as training images next time; give a folder outside it, e.g. runs/mine"
        )
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder; give a folder, e.g. runs/mine")
    existing = next(p for p in (out.absolute(), *out.absolute().parents) if p.exists())
    if not existing.is_dir():
        _cannot_write(out, errno.ENOTDIR)
    if not os.access(existing, os.W_OK | os.X_OK):
        _cannot_write(out, errno.EACCES)


def _cannot_write(out: Path, code: int) -> None:
    raise UsageError(
        f"cannot write into the --out folder {out} ({os.strerror(code)}); give a "
        "folder you can write to, e.g. --out runs/mine"
    )


def _load_folder(
    folder: Path, image_size: int
) -> tuple[data.ImageData | data.ImageFiles, list[Path], list[str]]:
    """The folder's images and their files; every skipped file printed as one warning line.

    A folder of more than ``data.stream_threshold()`` image files is not decoded into memory
    but streamed from disk (``data.ImageFiles``)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if data.count_image_files(folder) > data.stream_threshold():
            images = data.scan_image_folder(folder)
            files = [Path(f) for f in images.files]
        else:
            images, files = data.load_image_folder_files(folder, image_size)
    skipped = [str(w.message) for w in caught if str(w.message).startswith("skipping ")]
    for message in skipped:
        print(f"warning: {message}", file=sys.stderr)
    return images, files, skipped


def _settings(args: argparse.Namespace) -> dict:
    """The options that decide what is trained: every one but ``--out``."""
    names = (flag[2:].replace("-", "_") for flag, *_ in FINETUNE_OPTIONS if flag != "--out")
    return {name: _plain(getattr(args, name)) for name in names}


def _plain(value):
    """An option's value as JSON holds it (a folder as its path)."""
    return str(value) if isinstance(value, Path) else value


def _run_identity(
    args: argparse.Namespace,
    images: data.Images,
    files: list[Path],
    unlabelled: data.ImageFiles | None = None,
) -> dict:
    """What decides a run's result, as ``run.json`` notes it: the options; the strategy,
    precision and libraries it computes with (a resumed phase must go on with the same); a
    digest of the image files read (paths, sizes, modification times) and their labels, and
    of the unlabelled image files."""
    seen = data.ImageFiles([str(f) for f in files], images.labels, images.class_names)
    digest = hashlib.sha256()
    for part in (seen, unlabelled) if unlabelled is not None else (seen,):
        fingerprint = part.fingerprint()
        listed = [fingerprint["files"], fingerprint["sizes"].tolist(),
                  fingerprint["mtimes"].tolist()]  # fmt: skip
        digest.update(json.dumps(listed, ensure_ascii=False).encode())
    digest.update(images.labels.tobytes())
    digest.update(json.dumps(images.class_names, ensure_ascii=False).encode())
    environment = {
        "strategy": distribute.settings().strategy,
        "precision": keras.mixed_precision.global_policy().name,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
    }
    return {"settings": _settings(args), "environment": environment, "images": digest.hexdigest()}


def _noted_run(out: Path) -> dict | None:
    """The ``run.json`` an earlier run left in ``out``, or None; one line (not a traceback)
    when it is damaged."""
    path = out / RUN_FILE
    if not path.is_file():
        return None
    try:
        noted = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        noted = None
    if not (isinstance(noted, dict) and isinstance(noted.get("settings"), dict)):
        raise UsageError(
            f"{path} is damaged (not the JSON finetune writes: cut short, or edited), so the "
            f"run in {out} cannot be resumed; delete {out} to start over, or give another --out"
        )
    return noted


def _check_same_run(out: Path, before: dict | None, noted: dict) -> None:
    """Refuse to resume another run in ``out``: its saved phases would be taken for this
    one's. Names every difference and the way out."""
    if before is None:
        return
    changed = []
    for group, flag in (("settings", "--"), ("environment", "")):
        then = before.get(group) if isinstance(before.get(group), dict) else {}
        for key, value in noted[group].items():
            if then.get(key, "not noted") != value:
                name = flag + key.replace("_", "-") if flag else key
                changed.append(f"{name} {then.get(key, 'not noted')} (now {value})")
    if before.get("images") != noted["images"]:
        changed.append("other images (files added, removed or changed since)")
    if changed:
        raise UsageError(
            f"--out {out} holds a run made with {', '.join(changed)}; to resume that run, "
            f"repeat its command as it was; to start this one, give another --out or delete {out}"
        )


def _start_run(out: Path, noted: dict) -> None:
    """Create ``out`` and note the run in it (the first write of the command)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        _write_json(out / RUN_FILE, noted)
    except OSError as exc:
        _cannot_write(out, exc.errno or errno.EIO)


def _resume_line(out: Path, args: argparse.Namespace, names: Sequence[str]) -> str:
    """Where a run that ``out`` already holds goes on: the candidates finished, and the one
    (and, for the fine-tune, the phase and epoch) the next step continues with."""
    finished = [name for name in names if (out / name / recipe.CANDIDATE_RESULT).is_file()]
    for name in names:
        if name in finished:
            continue
        earlier = f"{' and '.join(finished)} finished earlier; " if finished else ""
        where = _finetune_where(out / name, args) if name == "finetune" else "goes on"
        return f"resuming the run in {out}: {earlier}{name} {where}"
    return (
        f"the run in {out} finished earlier: its models are restored and the report written "
        "again, nothing is trained"
    )


def _finetune_where(run: Path, args: argparse.Namespace) -> str:
    """Where an interrupted fine-tune in ``run`` goes on: its phase and epoch."""
    path = run / recipe.PHASES_FILE
    finished = list(json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else []
    phases = [(name, n) for name, n in (("head", args.head_epochs),
                                        ("fine-tune", args.finetune_epochs)) if n]  # fmt: skip
    for phase, epochs in phases:
        if phase not in finished:
            done = _epochs_backed_up(run / phase / training.BACKUP_DIR)
            at = f"after epoch {done} of {epochs}" if done else f"at epoch 1 of {epochs}"
            return f"({', '.join(finished) + ' finished, ' if finished else ''}{phase} {at})"
    return "(its phases finished; restored)"


def _epochs_backed_up(backup: Path) -> int:
    """How many epochs of an interrupted fit Keras' BackupAndRestore resumes after."""
    for name in ("training_metadata.json", "training_metadata.json.bkp"):
        try:
            return int(json.loads((backup / name).read_text(encoding="utf-8"))["epoch"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return 0


def _check_cut(model, layer: str) -> None:
    """Fail before training when fine-tuning cannot start at ``layer``."""
    try:
        frozen.cut(model, layer)
    except BackboneError as exc:
        raise UsageError(f"--unfreeze-from {layer}: {exc}") from None


def _print_plan(args, images, parts, skipped, names, unlabelled) -> None:
    """What is about to happen, in a few lines."""
    counts = ", ".join(
        f"{name} {n}" for name, n in zip(images.class_names, images.class_counts(), strict=True)
    )
    print(
        f"{len(images)} images in {images.n_classes} classes ({counts}) from {args.folder}"
        + (f"; {len(skipped)} file(s) skipped" if skipped else "")
    )
    if isinstance(images, data.ImageFiles):
        print(
            f"more than {data.stream_threshold()} images: read from disk batch by batch, "
            "not held in memory"
        )
    print(
        "split: "
        + ", ".join(f"{len(part)} {name}" for name, part in parts.items())
        + f" (stratified, seed {args.seed})"
    )
    if len(names) > 1:
        budget = f"; after {args.budget_s:g} s the later ones are skipped" if args.budget_s else ""
        print(f"recipe auto: {' then '.join(names)}, the higher validation accuracy kept{budget}")
    if "ensemble" in names:
        print(
            "ensemble: multi-depth features of the frozen "
            f"{' and '.join(recipe.ENSEMBLE_BACKBONES)} at {args.image_size} px, "
            f"computed once; {args.ensemble_heads} heads, "
            "each stopped early on the validation loss, averaged"
        )
    if "finetune" in names:
        print(
            f"finetune 1. head: up to {args.head_epochs} epochs on features of the frozen "
            f"{args.backbone} at {args.image_size} px, computed once (learning rate "
            f"{args.head_lr})"
        )
        if args.finetune_epochs:
            print(
                f"finetune 2. from layer {args.unfreeze_from} up (BatchNormalization frozen), up "
                f"to {args.finetune_epochs} epochs (learning rate {args.finetune_lr})"
            )
        print(
            f"each phase stops after {args.patience} epochs without a lower validation loss and "
            "keeps its best epoch"
        )
    if unlabelled is not None:
        print(
            f"then self-training with {len(unlabelled)} unlabelled images from {args.unlabelled}: "
            "a fixed number of rounds, the confidence threshold chosen on validation, kept only "
            "if validation accuracy improves"
        )
