"""Write a small folder of generated images, one sub-folder per class (§2.1 "your own images").

    python scripts/make_image_folder.py build/own_images --classes 猫 狗 鸟 --per-class 40

Each class has its own colour and stripe direction, plus noise, so a classifier can learn it
and a broken pipeline cannot; ``--awkward`` adds what real folders hold: a greyscale image, an
RGBA image, a phone photo stored sideways with its rotation in EXIF, a WebP image, a file with
an image extension that is not an image, and a JPEG whose start and end look right but whose
data is corrupt in the middle (a decoder stops there). Used by CI to run
notebook 01 on a folder, and handy to try the book's folder path without photos of your own.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = [(200, 60, 60), (60, 160, 60), (60, 90, 200), (200, 170, 40), (150, 60, 170)]
#: The EXIF tag of how the camera was held; 6: turned right, as a phone's portrait photo.
ORIENTATION, TURNED_RIGHT = 0x0112, 6


def picture(label: int, rng: np.random.Generator, size: int) -> Image.Image:
    """A noisy RGB image: the class's colour, stripes at the class's angle."""
    y, x = np.mgrid[0:size, 0:size] / size
    angle = np.pi * label / len(COLOURS)
    stripes = 0.5 + 0.5 * np.sin(12 * (x * np.cos(angle) + y * np.sin(angle)) + rng.uniform(0, 6))
    colour = np.array(COLOURS[label % len(COLOURS)], dtype=float)
    pixels = stripes[..., None] * colour + rng.normal(0, 25, (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype("uint8"))


def make_folder(
    root: Path, classes: list[str], per_class: int, size: int = 48, seed: int = 0,
    awkward: bool = False,
) -> Path:  # fmt: skip
    """Write ``per_class`` images (JPEG and PNG alternately) for each class under ``root``."""
    rng = np.random.default_rng(seed)
    for label, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            suffix = ".jpg" if i % 2 else ".png"
            picture(label, rng, size).save(folder / f"{name}_{i:03d}{suffix}")
    if awkward:
        first = root / classes[0]
        picture(0, rng, size).convert("L").save(first / "greyscale.png")
        picture(0, rng, size).convert("RGBA").save(first / "with_alpha.png")
        (first / "not_an_image.jpg").write_bytes(b"this file only pretends to be a JPEG")
        sideways(picture(0, rng, size)).save(first / "phone_portrait.jpg", exif=_turned_right())
        picture(0, rng, size).save(first / "photo.webp")
        corrupt_in_the_middle(picture(0, rng, size), first / "corrupt_inside.jpg")
    return root


def sideways(image: Image.Image) -> Image.Image:
    """``image`` as a phone stores a portrait photo: its pixels turned left (landscape), to
    be turned right again as its EXIF orientation says."""
    return image.transpose(Image.Transpose.ROTATE_90)


def _turned_right() -> Image.Exif:
    exif = Image.Exif()
    exif[ORIENTATION] = TURNED_RIGHT
    return exif


def corrupt_in_the_middle(image: Image.Image, path: Path) -> None:
    """``image`` as a JPEG that starts and ends as a whole one does, with a second
    start-of-image marker in the middle of its compressed data."""
    image.save(path, quality=95)
    whole = bytearray(path.read_bytes())
    scan = whole.index(b"\xff\xda")  # the compressed pixels follow this header
    start = scan + 2 + int.from_bytes(whole[scan + 2 : scan + 4], "big")
    middle = (start + len(whole)) // 2
    whole[middle : middle + 2] = b"\xff\xd8"
    path.write_bytes(bytes(whole))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="folder to write (created)")
    parser.add_argument("--classes", nargs="+", default=["猫", "狗", "鸟"], help="class names")
    parser.add_argument("--per-class", type=int, default=40, help="images per class")
    parser.add_argument("--size", type=int, default=48, help="image side in pixels")
    parser.add_argument(
        "--awkward",
        action="store_true",
        help="add greyscale, RGBA, EXIF-rotated, WebP and corrupt files",
    )
    args = parser.parse_args()
    make_folder(args.root, args.classes, args.per_class, args.size, awkward=args.awkward)
    print(f"{len(args.classes)} classes x {args.per_class} images in {args.root}")


if __name__ == "__main__":
    main()
