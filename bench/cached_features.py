"""Benchmark: training a head on cached features vs through the frozen base (§4.4 fast path).

Prints wall times and their ratio for the same number of head epochs on the same images.
Run with `make bench` (KERAS_HOME must hold the MobileNetV2 weights).
"""

from __future__ import annotations

import argparse
import time

import ftutils
from ftutils import data, features, models, training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=96)
    args = parser.parse_args()
    ftutils.setup(verbose=False)
    train_all, _ = data.load_fashion_mnist()
    train, val = data.split(data.per_class(train_all, args.per_class), 0.2)

    model = models.build_classifier("mobilenet_v2", 10, args.image_size)
    start = time.perf_counter()
    training.compile_classifier(model)
    training.fit(model, train, val, args.epochs, verbose=0)
    through_base = time.perf_counter() - start

    model = models.build_classifier("mobilenet_v2", 10, args.image_size)
    start = time.perf_counter()
    train_features = features.extract_features(model, train, use_disk_cache=False)
    val_features = features.extract_features(model, val, use_disk_cache=False)
    extracted = time.perf_counter() - start
    features.train_head(train_features, train, val_features, val, epochs=args.epochs)
    cached = time.perf_counter() - start

    print(f"{len(train)} training images, {args.epochs} epochs, {args.image_size} px")
    print(f"through the frozen base:   {through_base:6.1f} s")
    print(f"cached features (total):   {cached:6.1f} s  (extraction {extracted:.1f} s)")
    print(f"speed-up: {through_base / cached:.1f}x")


if __name__ == "__main__":
    main()
