"""``python -m ftutils``: the article's §4.4 workflow on a reader's own image folder.

``finetune FOLDER`` checks and splits the folder, runs the book's recipe
(:func:`ftutils.recipe.fine_tune`: a new head on features of the frozen base computed once,
then the base's top block fine-tuned with BatchNormalization frozen, both phases stopped
early on validation loss) and writes the model and a report (:mod:`ftutils.run_report`)
into ``--out``; the same command again resumes an interrupted run. ``predict MODEL
IMAGES...`` prints each image's most likely classes. A problem the user can fix prints one
line ``error: ...`` on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

from ftutils import backbones, config, data, frozen, models, recipe, run_report
from ftutils.errors import BackboneError, DataError, DistributionError, WeightsUnavailableError

#: The exit status for an error in the command's arguments or files.
USAGE_ERROR = 2

#: Errors that name their fix, printed as one line instead of a traceback.
USER_ERRORS = (DataError, BackboneError, WeightsUnavailableError, DistributionError)

#: The three parts of the reader's images, in the order ``data.three_way_split`` returns them.
PARTS = ("train", "validation", "test")


class UsageError(ValueError):
    """An argument or file of the command that cannot be used as given."""


def build_parser() -> argparse.ArgumentParser:
    """The ``finetune`` and ``predict`` commands and every option, with their help."""
    parser = argparse.ArgumentParser(
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
    ("--image-size", int, "PIXELS", 160, "the square size in pixels every image is resized to; at "
     "least 32"),
    ("--out", Path, "DIR", None, "the folder for the model, the report and the training state, "
     "created if needed; the same --out again resumes (default: runs/<FOLDER's name>)"),
    ("--head-epochs", int, "N", 20, "at most this many epochs for the new head, trained on the "
     "frozen base's features"),
    ("--finetune-epochs", int, "N", 10, "at most this many epochs fine-tuning the top of the base; "
     "0 stops after the head (feature extraction only)"),
    ("--unfreeze-from", str, "LAYER", None, "the base layer from which on fine-tuning trains "
     "(default: the first layer of the base's last block: "
     + ", ".join(f"{name} {layer}" for name, layer in recipe.TOP_BLOCK.items()) + ")"),
    ("--head-lr", float, "RATE", 1e-3, "Adam's learning rate for the head"),
    ("--finetune-lr", float, "RATE", 1e-4, "Adam's learning rate for fine-tuning, lower than the "
     "head's so the pretrained weights change little"),
    ("--batch-size", int, "N", 32, "images per training step"),
    ("--val-fraction", float, "F", 0.15, "the share of each class for validation: early stopping "
     "and each phase's best epoch are chosen on it"),
    ("--test-fraction", float, "F", 0.15, "the share of each class for the test set, used for "
     "nothing but the report's scores"),
    ("--seed", int, "N", 0, "the seed of the split, the head's first weights and the batch order"),
    ("--patience", int, "N", 3, "stop a phase after this many epochs without a lower validation "
     "loss; its best epoch is kept"),
)  # fmt: skip


def _add_finetune(commands) -> None:
    sub = commands.add_parser(
        "finetune",
        help="train a classifier on an image folder and write a report",
        description="Split FOLDER into training, validation and test images (stratified), "
        "train a new head on the frozen base's features, fine-tune the base's top block "
        "(BatchNormalization frozen), both with early stopping on the validation loss, and "
        "write model.keras, classes.json and report.md into --out. Run the same command "
        "again to resume an interrupted run.",
    )
    sub.add_argument(
        "folder",
        type=Path,
        metavar="FOLDER",
        help="one sub-folder of images per class, named after its class "
        "(FOLDER/cat/*.jpg, FOLDER/dog/*.png, ...)",
    )
    for flag, kind, metavar, default, text in FINETUNE_OPTIONS:
        shown = "" if default is None else " (default: %(default)s)"
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
        "images", type=Path, nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, BMP, GIF)"
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
    """Check everything that can be checked, then train (or resume), evaluate and report."""
    _check_arguments(args)
    args.unfreeze_from = args.unfreeze_from or recipe.TOP_BLOCK[args.backbone]
    out = _writable_folder(args.out or Path("runs") / args.folder.resolve().name, args.folder)
    config.setup(args.seed, verbose=False)  # seeds, op determinism, a CJK font for the figures
    backbones.imagenet_weights_path(args.backbone)  # missing weights fail before the data loads
    images, files, skipped = _load_folder(args.folder, args.image_size)
    split = data.three_way_split(images, args.val_fraction, args.test_fraction, args.seed)
    parts = {name: images.take(indices) for name, indices in zip(PARTS, split, strict=True)}
    notes = list(skipped)  # for the report
    if (unbalanced := data.imbalance(images)) is not None:
        print(f"warning: {unbalanced}", file=sys.stderr)
        notes.append(unbalanced)
    model = models.build_classifier(args.backbone, images.n_classes, args.image_size)
    if args.finetune_epochs:
        _check_cut(model, args.unfreeze_from)
    _check_same_run(out, _settings(args), images)
    _print_plan(args, images, parts, skipped)
    record = recipe.fine_tune(
        model, parts["train"], parts["validation"], args.head_epochs, args.finetune_epochs,
        args.head_lr, args.finetune_lr, unfreeze_from=args.unfreeze_from,
        patience=args.patience, batch_size=args.batch_size, seed=args.seed, run_dir=out,
        verbose=1 if sys.stdout.isatty() else 2,  # progress bars in a terminal, else lines
    )  # fmt: skip
    model.save(out / "model.keras")
    names = json.dumps(list(images.class_names), ensure_ascii=False)
    (out / "classes.json").write_text(names, encoding="utf-8")
    test_files = [files[i] for i in split[2]]
    run = run_report.Run(args.command_line, args.folder, _settings(args), parts, test_files, notes)
    accuracy = run_report.write(out, model, record, run)
    print(f"test accuracy: {accuracy:.3f} on {len(parts['test'])} images")
    print(f"wrote {out / 'model.keras'}, {out / 'classes.json'} and {out / 'report.md'}")
    print(f"classify new images with: python -m ftutils predict {out / 'model.keras'} IMAGE...")


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
    names = json.loads(classes_file.read_text(encoding="utf-8"))
    model = keras.saving.load_model(args.model, compile=False)
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
    """Fail on a backbone, size, count or fraction that cannot work, before any work starts."""
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
            f"{smallest} px; use --image-size {smallest} or more (e.g. 160)"
        )
    for option in ("head_epochs", "finetune_epochs", "patience"):
        if getattr(args, option) < 0:
            raise UsageError(f"--{option.replace('_', '-')} must be 0 or more")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}")


def _writable_folder(out: Path, images: Path) -> Path:
    """``out``, created if needed, once a file could be written into it; never inside the
    image folder, where the report's PNGs would become training images of the next run."""
    if out.resolve().is_relative_to(images.resolve()):
        raise UsageError(
            f"--out {out} is inside the image folder {images}: its report images would be "
            f"read as training images next time; give a folder outside it, e.g. runs/mine"
        )
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder; give a folder, e.g. runs/mine")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(
            f"cannot write into the --out folder {out} ({exc.strerror}); give a "
            "folder you can write to, e.g. --out runs/mine"
        ) from None
    return out


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
    return {name: getattr(args, name) for name in names}


def _check_same_run(out: Path, settings: dict, images: data.ImageData | data.ImageFiles) -> None:
    """Note the run's settings and images in ``out``; refuse to resume another run there
    (its saved phases would be taken for this one's). Streamed files are compared by path,
    size and modification time."""
    if isinstance(images, data.ImageFiles):
        seen = images.fingerprint()
        listed = [seen["files"], seen["sizes"].tolist(), seen["mtimes"].tolist()]
        content = json.dumps(listed, ensure_ascii=False).encode()
    else:
        content = images.images.tobytes()
    digest = hashlib.sha256(content + images.labels.tobytes())
    digest.update(json.dumps(images.class_names, ensure_ascii=False).encode())
    noted = {"settings": settings, "images": digest.hexdigest()}
    path = out / "run.json"
    if path.is_file():
        before = json.loads(path.read_text(encoding="utf-8"))
        changed = [k for k in settings if before["settings"].get(k) != settings[k]]
        if before["images"] != noted["images"]:
            changed.append("the images")
        if changed:
            raise UsageError(
                f"--out {out} holds a run with other {', '.join(changed)}; give "
                f"another --out, or delete {out} to start over"
            )
    path.write_text(json.dumps(noted, ensure_ascii=False, indent=1), encoding="utf-8")


def _check_cut(model, layer: str) -> None:
    """Fail before training when fine-tuning cannot start at ``layer``."""
    try:
        frozen.cut(model, layer)
    except BackboneError as exc:
        raise UsageError(f"--unfreeze-from {layer}: {exc}") from None


def _print_plan(args, images, parts, skipped) -> None:
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
    print(
        f"1. head: up to {args.head_epochs} epochs on features of the frozen {args.backbone} "
        f"at {args.image_size} px, computed once (learning rate {args.head_lr})"
    )
    if args.finetune_epochs:
        print(
            f"2. fine-tune: from layer {args.unfreeze_from} up (BatchNormalization frozen), up to "
            f"{args.finetune_epochs} epochs (learning rate {args.finetune_lr})"
        )
    print(
        f"each phase stops after {args.patience} epochs without a lower validation loss and "
        "keeps its best epoch"
    )
