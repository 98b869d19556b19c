"""Where and in what precision the book trains: one ``tf.distribute`` strategy, chosen once.

:func:`configure` (called by ``ftutils.setup()``) picks three things, from its arguments or
else from the environment, so CI and a reader's shell can switch them without editing code:

========================  ==============================================================
``FTUTILS_STRATEGY``      ``auto`` (default): MirroredStrategy over several GPUs,
                          OneDeviceStrategy on one GPU, TensorFlow's default strategy on
                          the CPU; ``default``; ``mirrored:N`` (N GPUs, or the CPU split
                          into N logical devices, which is how CI stands in for N GPUs);
                          ``multiworker`` (MultiWorkerMirroredStrategy, reads ``TF_CONFIG``)
``FTUTILS_PRECISION``     ``auto`` (default): ``mixed_float16`` on GPUs with tensor cores,
                          else ``float32``; or ``float32``, ``mixed_bfloat16``,
                          ``mixed_float16``
``FTUTILS_DETERMINISTIC`` ``auto`` (default): on without a GPU, off with one (deterministic
                          GPU kernels cost speed and some ops have none); ``1`` or ``0``
========================  ==============================================================

Only :func:`configure` and the block :func:`using` change the process: a library call reads
the strategy, the policy and determinism (:func:`settings`), and without ``setup()`` those are
the caller's own.
Models are built inside the chosen strategy's scope (``ftutils.models``), and every model
derived from one (a head, the upper part of a cut classifier) and every compile happens
under the strategy of the model it belongs to (:func:`scope_of`): a Keras 3 optimizer
builds its variables under the strategy it was created in. Batch sizes given to ftutils
are per replica; the global batch is that times :func:`replicas` (:func:`global_batch`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import inspect
import json
import os
import shutil
import tempfile
from pathlib import Path

import keras
import tensorflow as tf

from ftutils.errors import DistributionError

STRATEGY_ENV = "FTUTILS_STRATEGY"
PRECISION_ENV = "FTUTILS_PRECISION"
DETERMINISTIC_ENV = "FTUTILS_DETERMINISTIC"
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


@dataclasses.dataclass(frozen=True)
class Settings:
    """What :func:`configure` chose (``strategy`` is the requested form, e.g. ``mirrored:2``)."""

    strategy: str
    precision: str
    deterministic: bool


_configured: dict = {}  # "settings" and "strategy" once configure() has run


def _gpus() -> list:
    return tf.config.list_physical_devices("GPU")


def _parse_strategy(spec: str) -> tuple[str, int]:
    kind, _, count = spec.partition(":")
    if kind in ("auto", "default", "multiworker") and not count:
        return kind, 0
    if kind == "mirrored" and count.isdigit() and int(count) >= 1:
        return kind, int(count)
    raise DistributionError(
        f"unknown strategy {spec!r}; use auto, default, mirrored:N (N >= 1) or multiworker "
        f"(in {STRATEGY_ENV} or ftutils.setup(strategy=...))"
    )


def _split_cpu(n: int) -> list[str]:
    """Split the CPU into ``n`` logical devices (possible only before TensorFlow starts)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * n
        )
    except RuntimeError:
        have = len(tf.config.list_logical_devices("CPU"))
        if have != n:
            raise DistributionError(
                f"cannot split the CPU into {n} devices: TensorFlow has already started with "
                f"{have}. Choose the strategy first thing, in a fresh process or a restarted "
                f"kernel: ftutils.setup(strategy='mirrored:{n}') or {STRATEGY_ENV}=mirrored:{n}"
            ) from None
    return [f"/cpu:{i}" for i in range(n)]


def make_strategy(spec: str) -> tf.distribute.Strategy:
    """A new strategy for ``spec`` (``auto``, ``default``, ``mirrored:N``, ``multiworker``)."""
    kind, count = _parse_strategy(spec)
    gpus = _gpus()
    if kind == "auto":
        if len(gpus) > 1:
            return tf.distribute.MirroredStrategy()
        if len(gpus) == 1:
            return tf.distribute.OneDeviceStrategy("/gpu:0")
        return tf.distribute.get_strategy()
    if kind == "default":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        if gpus:
            if count > len(gpus):
                raise DistributionError(
                    f"mirrored:{count} asks for {count} GPUs; this machine has {len(gpus)}"
                )
            return tf.distribute.MirroredStrategy([f"/gpu:{i}" for i in range(count)])
        return tf.distribute.MirroredStrategy(_split_cpu(count))
    if "TF_CONFIG" not in os.environ:
        raise DistributionError(
            'multiworker needs TF_CONFIG, e.g. {"cluster": {"worker": ["host1:12345", '
            '"host2:12345"]}, "task": {"type": "worker", "index": 0}} on the first '
            "machine (README, 'Several GPUs or machines')"
        )
    return tf.distribute.MultiWorkerMirroredStrategy()


def _choose_precision(spec: str) -> str:
    if spec == "auto":
        for gpu in _gpus():
            capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
            if capability and capability >= (7, 0):  # tensor cores: float16 pays off
                return "mixed_float16"
        return "float32"
    if spec not in PRECISIONS:
        raise DistributionError(
            f"unknown precision {spec!r}; use auto or one of {', '.join(PRECISIONS)} "
            f"(in {PRECISION_ENV} or ftutils.setup(precision=...))"
        )
    return spec


def _choose_determinism(spec: str | bool) -> bool:
    if isinstance(spec, bool):
        return spec
    if spec == "auto":
        return not _gpus()
    if spec in ("0", "1"):
        return spec == "1"
    raise DistributionError(f"{DETERMINISTIC_ENV} must be auto, 0 or 1, got {spec!r}")


def configure(
    strategy: str | None = None,
    precision: str | None = None,
    deterministic: bool | None = None,
) -> Settings:
    """Choose the strategy, the precision policy and op determinism; return the choice.

    Arguments left ``None`` come from the environment (module docstring), else ``auto``.
    The strategy is created once per process: configuring again with another strategy is
    refused (a MirroredStrategy over logical devices or across machines cannot be undone),
    while precision and determinism may change.
    """
    strategy = strategy or os.environ.get(STRATEGY_ENV, "auto")
    _parse_strategy(strategy)  # a bad value fails before anything is changed
    precision = _choose_precision(precision or os.environ.get(PRECISION_ENV, "auto"))
    determinism = _choose_determinism(
        deterministic if deterministic is not None else os.environ.get(DETERMINISTIC_ENV, "auto")
    )
    previous = _configured.get("settings")
    if previous is None:
        _configured["strategy"] = make_strategy(strategy)
    elif previous.strategy != strategy:
        raise DistributionError(
            f"the strategy is already {previous.strategy!r} in this process; restart the kernel "
            f"(or start a new process) to use {strategy!r}"
        )
    keras.mixed_precision.set_global_policy(precision)
    _set_op_determinism(determinism)
    _configured["settings"] = Settings(strategy, precision, determinism)
    return _configured["settings"]


def settings() -> Settings:
    """What ftutils builds under, read from the process and never changed by reading it.

    The strategy :func:`configure` chose (``"default"`` before any: a script that never calls
    ``ftutils.setup()`` gets TensorFlow's default strategy), and the precision policy and op
    determinism as they are now, whether ``setup()``, :func:`using` or the caller set them.
    """
    configured = _configured.get("settings")
    return Settings(
        configured.strategy if configured else "default",
        keras.mixed_precision.global_policy().name,
        _op_determinism(),
    )


def _op_determinism() -> bool:
    from tensorflow.python.framework import config as tf_config  # no public getter

    return bool(tf_config.is_op_determinism_enabled())


def _set_op_determinism(enabled: bool) -> None:
    if enabled:
        tf.config.experimental.enable_op_determinism()
    else:
        from tensorflow.python.framework import config as tf_config  # no public switch-off

        tf_config.disable_op_determinism()


@contextlib.contextmanager
def using(
    *,
    precision: str | None = None,
    deterministic: bool | None = None,
    seed: int | None = None,
    strategy: tf.distribute.Strategy | None = None,
):
    """Run the block with this precision policy, op determinism, seeds and strategy; then
    put back what the caller had.

    The explicit alternative to ``ftutils.setup()`` for a program that owns its process
    state: ftutils calls inside the block build and train under these settings (they read
    the live state, :func:`settings`), and after it the global policy, determinism and every
    random generator are as they were (seeds: ``ftutils.config.seeded``). Arguments left
    ``None`` are not touched. ``strategy`` is a ``tf.distribute.Strategy`` the caller made;
    its scope is entered for the block.
    """
    from ftutils import config

    if precision is not None and precision not in PRECISIONS:
        raise DistributionError(
            f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}"
        )
    if strategy is not None and not isinstance(strategy, tf.distribute.Strategy):
        raise DistributionError(
            f"strategy must be a tf.distribute.Strategy (e.g. tf.distribute.MirroredStrategy()), "
            f"got {type(strategy).__name__}; to choose one by name, use ftutils.setup(strategy=...)"
        )
    policy, determinism = keras.mixed_precision.global_policy(), _op_determinism()
    with contextlib.ExitStack() as stack:
        if seed is not None:
            stack.enter_context(config.seeded(seed))
        if strategy is not None:
            stack.enter_context(strategy.scope())
        try:
            if precision is not None:
                keras.mixed_precision.set_global_policy(precision)
            if deterministic is not None:
                _set_op_determinism(deterministic)
            yield settings()
        finally:
            keras.mixed_precision.set_global_policy(policy)
            _set_op_determinism(determinism)


def strategy() -> tf.distribute.Strategy:
    """The configured strategy, else TensorFlow's default one: what ftutils builds under."""
    return _configured["strategy"] if "strategy" in _configured else tf.distribute.get_strategy()


def current() -> tf.distribute.Strategy:
    """The strategy whose scope is active, else the configured one.

    So ``with some_strategy.scope(): ...`` around ftutils calls builds under that strategy.
    """
    return tf.distribute.get_strategy() if tf.distribute.has_strategy() else strategy()


def scope_of(model: keras.Model):
    """The scope of the strategy ``model`` was built under: compile and derive models in it."""
    return model.distribute_strategy.scope()


def replicas(model: keras.Model | None = None) -> int:
    """How many replicas share each batch: the model's strategy's, else the configured one's."""
    chosen = model.distribute_strategy if model is not None else current()
    return int(chosen.num_replicas_in_sync)


def global_batch(per_replica: int, model: keras.Model | None = None) -> int:
    """The batch one training step consumes: ``per_replica`` images on each replica."""
    return per_replica * replicas(model)


def adapt_for_multiworker(model: keras.Model) -> None:
    """Let Keras 3's ``fit``, ``evaluate`` and ``predict`` run ``model`` under a
    MultiWorkerMirroredStrategy (no-op otherwise).

    Keras 3 (to 3.15 at least) fails there twice (keras-team/keras issue 20585): before the
    first step it builds the metrics from a batch passed through ``strategy.reduce``, which
    takes one tensor, not an (images, labels) pair, so they are built from the worker's own
    batch instead (only the shapes count); after every training *and* validation step it
    averages the logged values over workers along axis 0, which a scalar lacks, so each gets
    an axis of length 1. ``predict`` gathers its outputs correctly and is left alone.

    Only the chief writes files (:func:`is_chief`): on the other workers, ``fit`` points
    every ``ModelCheckpoint`` and ``BackupAndRestore`` callback into a temporary folder,
    deleted when the fit ends (as tf.keras' own callbacks did, and TensorFlow's multi-worker
    guide recommends); a
    ``BackupAndRestore`` there resumes from a copy of the chief's backup, so a restarted
    cluster continues together (the run folder must be on a disk every worker reads).
    """
    strategy = model.distribute_strategy
    multiworker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    if not multiworker or getattr(model, "_adapted_for_multiworker", False):
        return  # a recompile keeps the adaptation; adapting twice would nest the axis
    model._adapted_for_multiworker = True

    def build_from_local_batch(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = keras.tree.map_structure(
                    lambda v: strategy.experimental_local_results(v)[0], next(batches)
                )
                break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    def with_worker_axis(step):
        return lambda data: keras.tree.map_structure(lambda v: v[None], step(data))

    model._maybe_symbolic_build = build_from_local_batch
    model.train_step = with_worker_axis(model.train_step)
    model.test_step = with_worker_axis(model.test_step)
    model.fit = _chief_writes(model.fit)


def is_chief() -> bool:
    """Whether this process writes files: yes, unless ``TF_CONFIG`` makes it a worker of a
    cluster other than its chief (the task of type ``chief``, else worker 0)."""
    try:
        config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    except json.JSONDecodeError as exc:
        raise DistributionError(
            f"TF_CONFIG is not valid JSON ({exc}); on worker 0 of two, for example: "
            '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
            '"task": {"type": "worker", "index": 0}}'
        ) from None
    cluster, task = config.get("cluster") or {}, config.get("task") or {}
    if not cluster or not task:
        return True
    kind, index = task.get("type"), int(task.get("index", 0))
    return kind == "chief" or (kind == "worker" and index == 0 and "chief" not in cluster)


def _chief_writes(fit):
    """``fit`` that, on a worker other than the chief, gives it copies of its file-writing
    callbacks that write only into a temporary folder (the caller's callbacks are untouched)."""
    signature = inspect.signature(fit)

    @functools.wraps(fit)
    def fit_on_this_worker(*args, **kwargs):
        if is_chief():
            return fit(*args, **kwargs)
        bound = signature.bind(*args, **kwargs)
        given = bound.arguments.get("callbacks") or []
        listed = given.callbacks if isinstance(given, keras.callbacks.CallbackList) else given
        with tempfile.TemporaryDirectory(prefix="ftutils-worker-") as folder:
            bound.arguments["callbacks"] = [
                _writing_into(c, Path(folder) / str(i)) for i, c in enumerate(listed)
            ]
            return fit(*bound.args, **bound.kwargs)

    return fit_on_this_worker


def _writing_into(callback: keras.callbacks.Callback, folder: Path) -> keras.callbacks.Callback:
    """``callback``, or a copy of it that writes its files into ``folder``."""
    if isinstance(callback, keras.callbacks.BackupAndRestore):
        if os.path.isdir(callback.backup_dir):  # resume from the state the chief backed up
            shutil.copytree(callback.backup_dir, folder)
        settings = (callback.save_freq, callback.double_checkpoint, callback.delete_checkpoint)
        elsewhere = copy.copy(callback)  # keeps a subclass's own behaviour (training._Backup)
        keras.callbacks.BackupAndRestore.__init__(elsewhere, str(folder), *settings)  # its paths
        return elsewhere
    if isinstance(callback, keras.callbacks.ModelCheckpoint):
        elsewhere = copy.copy(callback)
        elsewhere.filepath = str(folder / os.path.basename(callback.filepath))
        return elsewhere
    return callback


def require_single_device(variables, caller: str) -> None:
    """Refuse to run a from-scratch training loop inside a strategy or on its variables."""
    inner = [v.value if isinstance(v, keras.Variable) else v for v in variables]
    distributed = [v for v in inner if isinstance(v, tf.distribute.DistributedValues)]
    if (tf.distribute.has_strategy() and current().num_replicas_in_sync > 1) or distributed:
        raise DistributionError(
            f"{caller} is a single-device loop written from scratch (the article's formulas) "
            "and cannot synchronise replicas; create its variables and call it outside "
            "`with strategy.scope()` (keras.Model.fit handles replicas for you)"
        )


def describe() -> dict:
    """Strategy, replicas, precision, determinism and worker, for ``setup()``'s summary."""
    chosen = current()
    return {
        "strategy": f"{type(chosen).__name__} ({settings().strategy})",
        "replicas": int(chosen.num_replicas_in_sync),
        "precision": settings().precision,
        "deterministic": settings().deterministic,
        "worker": _worker(),
    }


def _worker() -> str:
    """``index of count`` for a multi-worker run, else ``single process``."""
    config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    workers = config.get("cluster", {}).get("worker", [])
    if not workers:
        return "single process"
    return f"{config.get('task', {}).get('index', 0)} of {len(workers)}"


@contextlib.contextmanager
def explain_determinism_errors():
    """Turn TensorFlow's error for an op without a deterministic kernel into a clear one.

    With op determinism on, such an op raises (on a GPU typically UnimplementedError, e.g.
    for a gradient with no deterministic GPU kernel on that TensorFlow version); the message
    names the switch that turns determinism off.
    """
    try:
        yield
    except (tf.errors.UnimplementedError, tf.errors.FailedPreconditionError) as exc:
        if "determinis" not in str(exc).lower():
            raise
        first_line = str(exc).strip().splitlines()[0][:300]
        raise DistributionError(
            "an operation has no deterministic implementation on this device, and op "
            "determinism is on. Turn it off with FTUTILS_DETERMINISTIC=0 (or "
            "ftutils.setup(deterministic=False)); results then vary slightly from run to run. "
            f"TensorFlow said: {first_line}"
        ) from None


def even_batches(dataset: tf.data.Dataset, model: keras.Model | None = None) -> tf.data.Dataset:
    """``dataset``'s batches cut to a multiple of the replicas (``model``'s, else the
    configured strategy's), so that every replica gets a share of each batch.

    With TensorFlow 2.21 and Keras 3.15, ``fit`` and ``evaluate`` under a MirroredStrategy
    fail on a batch that does not split evenly (e.g. "Incompatible shapes: [0,32,32,3] vs.
    [8]" on a last batch smaller than the replicas). Each batch keeps its first examples, a
    multiple of the replicas; a batch left empty is dropped. With a global batch that is a
    multiple of the replicas, only the last batch loses examples: fewer than the replicas.
    Unchanged on one replica. Batches may be tuples or dicts of tensors. Keras learns the
    number of batches during the first pass (it cannot know beforehand which batches end
    empty) and then warns that the "input ran out of data": expected, and harmless here.
    """
    count = replicas(model)
    if count == 1:
        return dataset

    def size(element) -> tf.Tensor:
        return tf.shape(tf.nest.flatten(element)[0])[0]

    def trim(*element):
        element = element if len(element) > 1 else element[0]
        keep = size(element) // count * count
        return tf.nest.map_structure(lambda tensor: tensor[:keep], element)

    return dataset.map(trim).filter(lambda *element: size(element) > 0)
