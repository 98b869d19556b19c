"""Batch size and the number of epochs of a fine-tune (§4.4: 设置学习率、批大小、迭代次数).

    python scripts/batch_epochs_study.py        # -> data/results/batch_epochs_study.json
    python scripts/batch_epochs_study.py --out /tmp/x.json --seeds 0 --batch-sizes 32
    python scripts/batch_epochs_study.py --merge /tmp/a.json /tmp/b.json   # parts run apart

The fine-tune of ``depth_study.py``'s optimizer experiment: MobileNetV2 (ImageNet weights) at
96 px on Fashion-MNIST, 100 training images per class, 50 validation images per class, the
same 1,000 test images; the head trained first with the base frozen (``depth_study``'s phase
1), then the top block unfrozen (BatchNormalization frozen) and trained with Adam on the
activations entering it, computed once. For every seed, batch size and learning rate of the
grid, phase 2 starts from the same trained head and runs a fixed ``epochs`` epochs without
early stopping; after every epoch the validation loss and accuracy and the test accuracy are
recorded, with the epoch's seconds. So one run gives both ways of setting the number of
epochs: stopping where the validation loss is lowest (what early stopping with the best
epoch restored gives, had it patience to the end), and a number fixed in advance.

The learning rate is re-chosen for each batch size, on validation only (:func:`choose`):
a rate that suits batches of 8 need not suit batches of 128. Results are written after every
run (a re-run with the same parameters skips what the file holds). The notebook
``04_4_finetuning_workflow.ipynb`` plots them; ``tests/test_batch_epochs_study.py`` re-runs a
tiny configuration.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parent.parent
RESULTS = PROJECT / "data" / "results" / "batch_epochs_study.json"

PARAMS = {
    "backbone": "mobilenet_v2",
    "image_size": 96,
    "per_class": 100,  # as depth_study's optimizer experiment
    "val_per_class": 50,
    "test_per_class": 100,
    "seeds": [0, 1, 2],
    "head_epochs": 60,  # phase 1 as depth_study: Adam 1e-3, early stopping, patience 5
    "head_lr": 1e-3,
    "head_patience": 5,
    "first_trainable": "block_16_expand",  # the top block
    "optimizer": "adam",
    "batch_sizes": [8, 32, 128],
    "learning_rates": [3e-5, 1e-4, 3e-4],  # every one, every batch size and seed
    "epochs": 10,  # every run, no early stopping; also the fixed number of epochs compared
    "shifts": {},  # depth_study.load_sets: no shifted test sets here
}


def _depth_study():
    from ftutils import studies

    return studies.load_script("depth_study")


class Study:
    """One seed's sets, its trained head and the activations entering the top block."""

    def __init__(self, seed: int, params: dict):
        from ftutils import backbones, frozen, models

        depth = _depth_study()
        self.seed, self.params = seed, params
        self.sets = depth.load_sets(params["per_class"], seed, params, shifts=[])
        self.model = depth.new_classifier(seed, params)
        start = time.perf_counter()
        depth.train_head(self.model, self.sets, seed, params)
        self.head_seconds = time.perf_counter() - start
        self.after_head = self.model.get_weights()
        self.base = models.base_of(self.model)
        backbones.unfreeze(self.base, from_layer=params["first_trainable"])
        self.part = frozen.cut(self.model, params["first_trainable"])
        self.x = {n: frozen.activations(self.part.lower, d) for n, d in self.sets.items()}
        self.y = {n: d.labels for n, d in self.sets.items()}
        self.dropout_states = [
            layer.seed_generator.state
            for layer in self.part.upper.layers
            if hasattr(layer, "seed_generator")
        ]
        self.head = {
            f"head {n}_accuracy": self.accuracy(n) for n in ("val", "test")
        }  # the head alone, before phase 2

    def accuracy(self, name: str) -> float:
        from ftutils import training

        return training.accuracy(self.part.upper, self.x[name], self.y[name])

    def run(self, batch_size: int, learning_rate: float) -> dict:
        """Phase 2 from the trained head for ``epochs`` epochs: the curves, epoch by epoch."""
        import keras

        from ftutils import config, frozen, training

        p = self.params
        self.model.set_weights(self.after_head)
        for state in self.dropout_states:  # the same dropout masks whatever ran before
            state.assign([self.seed, 0])
        training.compile_classifier(self.part.upper, p["optimizer"], learning_rate)
        curves = {"test_accuracy": [], "epoch_seconds": []}
        study = self

        class EveryEpoch(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                curves["epoch_seconds"].append(time.perf_counter() - self.start)
                curves["test_accuracy"].append(study.accuracy("test"))

        config.set_seed(self.seed)
        record = frozen.fit_arrays(
            self.part.upper, self.x["train"], self.y["train"], (self.x["val"], self.y["val"]),
            p["epochs"], batch_size=batch_size, patience=None, callbacks_extra=[EveryEpoch()],
        )  # fmt: skip
        return {
            "seed": self.seed, "batch_size": batch_size, "learning_rate": learning_rate,
            **self.head, "head_seconds": self.head_seconds,
            **{k: [float(v) for v in record.series(k)]
               for k in ("loss", "accuracy", "val_loss", "val_accuracy")},
            **curves,
        }  # fmt: skip


def choose(runs: list[dict], rule: str, fixed_epochs: int | None = None) -> dict:
    """For each (seed, batch size), the run whose learning rate validation chooses and the
    epoch it is read at, by ``rule``:

    * ``"stop"``: the lowest validation loss over all epochs (early stopping on the validation
      loss with the best epoch kept, as ``depth_study``'s fine-tunes);
    * ``"stop on accuracy"``: the highest validation accuracy over all epochs (its first epoch);
    * ``"fixed"``: the lowest validation loss at epoch ``fixed_epochs``, read there.

    Returns {(seed, batch size): (run, epoch index)}."""
    best: dict = {}
    for run in runs:
        losses, accuracies = np.asarray(run["val_loss"]), np.asarray(run["val_accuracy"])
        if rule == "stop":
            at, score = int(np.argmin(losses)), float(np.min(losses))
        elif rule == "stop on accuracy":
            at, score = int(np.argmax(accuracies)), -float(np.max(accuracies))
        elif rule == "fixed":
            at = fixed_epochs - 1
            score = float(losses[at])
        else:
            raise ValueError(f"unknown rule {rule!r}")
        key = (run["seed"], run["batch_size"])
        if key not in best or score < best[key][2]:
            best[key] = (run, at, score)
    return {key: (run, at) for key, (run, at, _) in best.items()}


def plan(params: dict, seeds=None, batch_sizes=None) -> list[tuple[int, int, float]]:
    """(seed, batch size, learning rate) of every run, seed by seed."""
    return [
        (seed, b, lr)
        for seed in params["seeds"]
        for b in params["batch_sizes"]
        for lr in params["learning_rates"]
        if (seeds is None or seed in seeds) and (batch_sizes is None or b in batch_sizes)
    ]


def run_to_file(out: Path, params: dict, todo: list, command: str) -> None:
    from ftutils import studies

    made = studies.record(
        command, params, "ImageNet MobileNetV2 1.0 (224 no-top file, loaded into a 96-px base)"
    )
    results = studies.ResultsFile(out, made, key=("seed", "batch_size", "learning_rate"))
    for seed in sorted({s for s, _, _ in todo}):
        mine = [(b, lr) for s, b, lr in todo if s == seed
                and not results.has(seed=seed, batch_size=b, learning_rate=lr)]  # fmt: skip
        if not mine:
            continue
        study = Study(seed, params)
        for b, lr in mine:
            row = study.run(b, lr)
            results.save(row)
            best = int(np.argmin(row["val_loss"]))
            print(f"seed {seed} batch {b} lr {lr:g}: val loss min at epoch {best + 1}, test "
                  f"{row['test_accuracy'][best]:.3f} there, {row['test_accuracy'][-1]:.3f} at "
                  f"the end, {sum(row['epoch_seconds']):.0f} s", flush=True)  # fmt: skip


def merge(parts: list[Path], out: Path, command: str, note: str = "") -> dict:
    """One results file from parts run as parallel processes of the same parameters (each
    with ``--seeds``): the first part's record, every part's runs, the parts listed."""
    from ftutils import studies

    contents = [json.loads(Path(part).read_text()) for part in parts]
    params = contents[0]["provenance"]["parameters"]
    if any(c["provenance"]["parameters"] != params for c in contents):
        raise ValueError("the parts ran with different parameters: they cannot be merged")
    made = dict(contents[0]["provenance"], command=command)
    made["parts"] = [{k: c["provenance"][k] for k in ("command", "started", "finished")}
                     | {"runs": len(c["runs"])} for c in contents]  # fmt: skip
    made["started"] = min(c["provenance"]["started"] for c in contents)
    made["finished"] = max(c["provenance"]["finished"] for c in contents)
    if note:
        made["note"] = note
    runs = sorted((r for c in contents for r in c["runs"]),
                  key=lambda r: (r["seed"], r["batch_size"], r["learning_rate"]))  # fmt: skip
    result = {"provenance": made, "runs": runs}
    studies.write_json(out, result)
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--seeds", type=int, nargs="+", help="only these seeds")
    parser.add_argument("--batch-sizes", type=int, nargs="+", help="only these batch sizes")
    parser.add_argument("--merge", type=Path, nargs="+", help="part files to join into --out")
    parser.add_argument("--note", default="", help="with --merge: how the parts were made")
    args = parser.parse_args(argv)

    import ftutils

    ftutils.setup(seed=0, verbose=False)
    command = shlex.join(["python", "scripts/batch_epochs_study.py", *argv])
    if args.merge:
        merge(args.merge, args.out, command, args.note)
        return 0
    start = time.perf_counter()
    todo = plan(PARAMS, args.seeds, args.batch_sizes)
    run_to_file(args.out, json.loads(json.dumps(PARAMS)), todo, command)
    print(f"{len(todo)} runs in {time.perf_counter() - start:.0f} s -> {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
