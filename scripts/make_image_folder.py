"""Write a small folder of generated images, one sub-folder per class (§2.1 "your own images").

    python scripts/make_image_folder.py build/own_images --classes 猫 狗 鸟 --per-class 40

Each class has its own colour and stripe direction, plus noise, so a classifier can learn it
and a broken pipeline cannot; ``--awkward`` adds what real folders hold: a greyscale image, an
RGBA image and a file with an image extension that is not an image. Used by CI to run
notebook 01 on a folder, and handy to try the book's folder path without photos of your own.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = [(200, 60, 60), (60, 160, 60), (60, 90, 200), (200, 170, 40), (150, 60, 170)]


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
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="folder to write (created)")
    parser.add_argument("--classes", nargs="+", default=["猫", "狗", "鸟"], help="class names")
    parser.add_argument("--per-class", type=int, default=40, help="images per class")
    parser.add_argument("--size", type=int, default=48, help="image side in pixels")
    parser.add_argument("--awkward", action="store_true", help="add greyscale, RGBA, corrupt")
    args = parser.parse_args()
    make_folder(args.root, args.classes, args.per_class, args.size, awkward=args.awkward)
    print(f"{len(args.classes)} classes x {args.per_class} images in {args.root}")


if __name__ == "__main__":
    main()
