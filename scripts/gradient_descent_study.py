"""§3.2's loop on five seeds: its stopping rule as a rule, and the loop training a backbone layer.

    python scripts/gradient_descent_study.py --part rules  # -> gradient_descent_rules.json
    python scripts/gradient_descent_study.py --part layer  # -> gradient_descent_layer.json

Both write to data/results/.

Fashion-MNIST at 96 px through the frozen ImageNet MobileNetV2, as in
``03_2_gradient_descent.ipynb``: a pool of 130 images per class, split anew by every seed into
100 training and 30 validation images per class, and the same 100 test images per class.

``rules``: for every learning rate of ``rule_alphas``, full-batch gradient descent trains the
five seeds' softmax heads side by side for ``max_steps`` steps (:func:`side_by_side_curves`,
the notebook's loop), recording the training loss, validation loss, validation accuracy and
test accuracy after every step; the stopping rules of ``ftutils.stopping`` are applied to
those curves afterwards (the article's preset threshold and tolerance, each half alone over a
grid of guesses, early stopping on validation, the fixed budget). The notebook picks one
learning rate on validation accuracy at the budget and re-runs it live.

``layer``: the hand-written loop trains the head alone, or the head and MobileNetV2's last
convolution (``Conv_1``, 320 -> 1280 channels, with its BatchNormalization frozen) on the
activations cached below it (:class:`TopLayer`): mini-batch SGD, ``layer_epochs`` passes, for
every learning rate of ``layer_alphas``, per seed. The notebook picks each arm's learning rate
on validation accuracy and compares their test accuracy.

Results are written after every run, with the command, parameters, library versions, machine
and dates; a re-run with the same parameters skips the runs the file already holds.
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
RESULTS = {
    part: PROJECT / "data" / "results" / f"gradient_descent_{part}.json"
    for part in ("rules", "layer")
}

PARAMS = {
    "dataset": "fashion_mnist",
    "backbone": "mobilenet_v2",
    "image_size": 96,
    "images_per_class": 100,
    "val_per_class": 30,
    "test_per_class": 100,
    "seeds": [0, 1, 2, 3, 4],
    # rules
    "rule_alphas": [3e-3, 1e-2, 3e-2, 1e-1],
    "max_steps": 1000,
    "threshold": 0.2,  # the article's preset loss threshold, guessed before the runs
    "tol": 1e-3,  # ... and its tolerance on one step's drop (the notebook's TOL)
    "patience": 50,  # early stopping on validation loss
    "threshold_grid": [0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0],
    "tol_grid": [1e-2, 1e-3, 1e-4, 1e-5, 1e-6],
    # layer
    "layer": "Conv_1",
    "layer_alphas": [3e-3, 1e-2, 3e-2],
    "layer_epochs": 10,
    "layer_batch": 32,
}
KEY = ("part", "run")
PARTS = ("rules", "layer")
ARMS = ("head only", "head + Conv_1")


def rule_outcomes(loss, val_loss, test, params: dict) -> dict:
    """Per stopping rule, from one seed's curves (entry t: after step t): the steps it ran,
    the step whose weights it keeps, and their test accuracy and training loss."""
    from ftutils import stopping

    p = params
    last = len(loss) - 1

    def kept(ran, step=None):
        step = ran if step is None else step
        return {"steps": int(ran), "kept": int(step), "test": float(test[step]),
                "loss": float(loss[step])}  # fmt: skip

    stopped, best = stopping.early_stop(val_loss, p["patience"])
    out = {
        "article": kept(stopping.threshold_stop(loss, p["threshold"], p["tol"])),
        "tolerance only": kept(stopping.threshold_stop(loss, None, p["tol"])),
        "threshold only": kept(stopping.threshold_stop(loss, p["threshold"], None)),
        "early stopping": kept(stopped, best),
        "fixed budget": kept(last),
    }
    out["threshold grid"] = [
        kept(stopping.threshold_stop(loss, t, None)) for t in p["threshold_grid"]
    ]
    out["tol grid"] = [kept(stopping.threshold_stop(loss, None, t)) for t in p["tol_grid"]]
    return out


def side_by_side_curves(x_pool, pool_labels, splits, x_test, test_labels, seeds, alpha, steps):
    """Full-batch gradient descent at ``alpha`` on every seed's head side by side (the
    notebook's loop): ``(loss, val_loss, val_accuracy, test_accuracy)``, each of shape
    ``(steps + 1, seeds)`` (row 0: the start)."""
    import tensorflow as tf

    from ftutils.scratch import optimizers

    n_classes = int(pool_labels.max()) + 1
    eye = np.eye(n_classes, dtype="float32")
    X = tf.constant(np.stack([x_pool[splits[s][0]] for s in seeds]))
    Y = tf.constant(eye[np.stack([pool_labels[splits[s][0]] for s in seeds])])
    X_val = tf.constant(np.stack([x_pool[splits[s][1]] for s in seeds]))
    Y_val = tf.constant(np.stack([pool_labels[splits[s][1]] for s in seeds]), tf.int64)
    Y_val_onehot = tf.one_hot(Y_val, n_classes)
    X_test = tf.constant(np.stack([x_test] * len(seeds)))
    Y_test = tf.constant(np.stack([test_labels] * len(seeds)), tf.int64)
    stack = optimizers.SoftmaxRegressionStack(X.shape[2], n_classes, seeds)
    rows = np.arange(X.shape[1], dtype="float32")[:, None]
    logs = [tf.Variable(tf.zeros((steps + 1, len(seeds)))) for _ in range(4)]
    row = tf.Variable(0)

    def summed_loss(r, _):
        index = tf.cast(r[:, 0], tf.int32)
        return tf.reduce_sum(stack.losses(tf.gather(X, index, axis=1), tf.gather(Y, index, axis=1)))

    def record():
        values = (stack.losses(X, Y), stack.losses(X_val, Y_val_onehot),
                  stack.accuracy(X_val, Y_val), stack.accuracy(X_test, Y_test))  # fmt: skip
        for log, value in zip(logs, values, strict=True):
            log[row].assign(value)
        row.assign_add(1)
        return tf.constant(0.0)

    optimizers.gradient_descent(summed_loss, stack.variables, optimizers.ScratchSGD(alpha), rows,
                                rows, steps, seed=seeds[0], monitor=record)  # fmt: skip
    return tuple(log.numpy() for log in logs)


class TopLayer:
    """MobileNetV2's last convolution and a softmax head, as plain variables.

    ``logits(a) = mean_{h,w}(relu6(BN(a * K))) W + b``: ``a`` the activations below the layer
    (``(n, h, w, 320)``), ``K`` the 1x1 kernel (ImageNet weights at the start), ``BN`` the
    layer's BatchNormalization in inference mode (frozen: its statistics and scale are
    constants), ``W, b`` the head, started like a ``keras.layers.Dense`` (seeded).
    """

    def __init__(self, base, layer: str, n_classes: int, seed: int):
        import tensorflow as tf

        from ftutils.scratch import optimizers

        conv, bn = base.get_layer(layer), base.get_layer(f"{layer}_bn")
        self.K = tf.Variable(conv.get_weights()[0], name="K")  # (1, 1, in, out)
        gamma, beta, mean, var = bn.get_weights()
        self.scale = tf.constant(gamma / np.sqrt(var + bn.epsilon))
        self.shift = tf.constant(beta - mean * gamma / np.sqrt(var + bn.epsilon))
        head = optimizers.SoftmaxRegression(self.K.shape[-1], n_classes, seed=seed)
        self.W, self.b = head.W, head.b

    def features(self, a):
        import tensorflow as tf

        z = tf.nn.conv2d(a, self.K, strides=1, padding="VALID")
        return tf.reduce_mean(tf.nn.relu6(z * self.scale + self.shift), axis=(1, 2))

    def logits(self, a):
        return self.features(a) @ self.W + self.b


class Study:
    """The data (:meth:`prepare`) and one run of each part (:meth:`rules`, :meth:`layer`)."""

    def __init__(self, params: dict | None = None):
        self.params = json.loads(json.dumps(PARAMS if params is None else params))

    def prepare(self, pool=None, test=None, extractor=None) -> Study:
        """Load the pool, the test images and the pooled features. A notebook that loaded
        them already (with the same parameters) passes its ``pool``, ``test`` and
        ``extractor``. The activations below the layer are computed by :meth:`layer` only."""
        from ftutils import backbones, data, frozen, models

        p = self.params
        if pool is None:
            train_all, test_all = data.load_dataset(p["dataset"], p["image_size"])
            pool = data.per_class(train_all, p["images_per_class"] + p["val_per_class"],
                                  seed=p["seeds"][0])  # fmt: skip
            test = data.per_class(test_all, p["test_per_class"], seed=0)
            extractor = models.build_classifier(p["backbone"], pool.n_classes, p["image_size"])
        self.pool, self.test, self.extractor = pool, test, extractor
        self.n_classes, self.pool_labels, self.test_labels = (
            pool.n_classes,
            pool.labels,
            test.labels,
        )
        self.x_pool, self.x_test = (frozen.extract_features(extractor, d) for d in (pool, test))
        self.splits = {s: data.holdout_indices(pool.labels, pool.n_classes, p["val_per_class"], s)
                       for s in p["seeds"]}  # fmt: skip
        weights = backbones.imagenet_weights_path(p["backbone"]).name
        self.weights_description = (
            f"ImageNet {p['backbone']} ({weights}), {p['image_size']}-px base"
        )
        return self

    def below_layer(self):
        """The activations below ``layer`` of the pool and the test images (computed once)."""
        from ftutils import frozen

        if not hasattr(self, "a_pool"):
            below = frozen.cut(self.extractor, self.params["layer"]).lower
            self.a_pool, self.a_test = (
                frozen.activations(below, d) for d in (self.pool, self.test)
            )
        return self.a_pool, self.a_test

    def rules(self, alpha: float) -> dict:
        """Every seed's curves at ``alpha`` and what each stopping rule makes of them."""
        p = self.params
        start = time.perf_counter()
        loss, val_loss, val_acc, test = side_by_side_curves(
            self.x_pool, self.pool_labels, self.splits, self.x_test, self.test_labels, p["seeds"],
            alpha, p["max_steps"],
        )  # fmt: skip
        per_seed = []
        for s, seed in enumerate(p["seeds"]):
            outcome = rule_outcomes(loss[:, s], val_loss[:, s], test[:, s], p)
            outcome.update(
                seed=seed,
                budget_val_accuracy=float(val_acc[-1, s]),
                start_loss=float(loss[0, s]),
                highest_loss=float(loss[:, s].max()),
            )
            per_seed.append(outcome)
        return {"part": "rules", "run": alpha, "seeds": per_seed,
                "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip

    def layer(self, seed: int) -> dict:
        """One seed: each arm at each learning rate, its validation and test accuracy."""
        import tensorflow as tf

        from ftutils import models
        from ftutils.scratch import losses, optimizers

        p = self.params
        a_pool, a_test = self.below_layer()
        train_index, val_index = self.splits[seed]
        y = np.eye(self.n_classes, dtype="float32")[self.pool_labels[train_index]]
        a_train, a_val = a_pool[train_index], a_pool[val_index]
        base = models.base_of(self.extractor)
        row = {"part": "layer", "run": seed}
        for arm in ARMS:
            row[arm] = {}
            for alpha in p["layer_alphas"]:
                top = TopLayer(base, p["layer"], self.n_classes, seed)
                if arm == "head only":  # the layer is fixed: its pooled output once, then the head
                    variables, inputs = [top.W, top.b], top.features(a_train)
                    logits = lambda x, top=top: x @ top.W + top.b  # noqa: E731
                    val_inputs, test_inputs = top.features(a_val), top.features(a_test)
                else:
                    variables, inputs, logits = [top.K, top.W, top.b], a_train, top.logits
                    val_inputs, test_inputs = a_val, a_test
                start = time.perf_counter()
                optimizers.gradient_descent(
                    lambda xb, yb, logits=logits: tf.reduce_mean(
                        losses.cross_entropy_from_logits(yb, logits(xb))),
                    variables, optimizers.ScratchSGD(alpha), inputs, y, p["layer_epochs"],
                    p["layer_batch"], seed=seed,
                )  # fmt: skip

                def accuracy(x, labels, logits=logits):
                    return float(np.mean(np.argmax(logits(x).numpy(), axis=1) == labels))

                row[arm][str(alpha)] = {
                    "val": accuracy(val_inputs, self.pool_labels[val_index]),
                    "test": accuracy(test_inputs, self.test_labels),
                    "seconds": round(time.perf_counter() - start, 1),
                }
        return row


def chosen_alpha(rule_runs: list[dict]) -> float:
    """The learning rate of the ``rules`` part with the highest mean validation accuracy at the
    fixed budget."""
    return max(rule_runs, key=lambda r: np.mean([s["budget_val_accuracy"] for s in r["seeds"]]))[
        "run"
    ]


def layer_choice(layer_runs: list[dict], arm: str) -> str:
    """The learning rate (as stored, a string) of ``arm`` with the highest mean validation
    accuracy over the seeds."""
    alphas = layer_runs[0][arm].keys()
    return max(alphas, key=lambda a: np.mean([r[arm][a]["val"] for r in layer_runs]))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=PARTS, required=True)
    parser.add_argument("--out", type=Path, help="default: data/results/gradient_descent_PART.json")
    args = parser.parse_args(argv)

    import ftutils
    from ftutils import studies

    ftutils.setup(seed=0, verbose=False)
    start = time.perf_counter()
    study = Study().prepare()
    command = shlex.join(["python", "scripts/gradient_descent_study.py", *argv])
    made = studies.record(command, study.params, study.weights_description)
    out = RESULTS[args.part] if args.out is None else args.out
    results = studies.ResultsFile(out, made, key=KEY)
    p = study.params
    todo = [(args.part, run) for run in p["rule_alphas" if args.part == "rules" else "seeds"]]
    for i, (part, run) in enumerate(todo, start=1):
        if results.has(part=part, run=run):
            continue
        row = study.rules(run) if part == "rules" else study.layer(run)
        results.save(row)
        print(f"[{i}/{len(todo)}] {part} {run}: {time.perf_counter() - start:.0f} s", flush=True)
    print(f"{len(todo)} runs in {time.perf_counter() - start:.0f} s -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
