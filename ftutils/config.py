"""Reproducible set-up for every notebook: seeds, determinism, paths, environment summary."""

from __future__ import annotations

import contextlib
import html
import os
import platform
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import platformdirs

#: The folder holding the ftutils package (the repository, for a clone).
PROJECT_DIR = Path(__file__).resolve().parent.parent

#: Where ftutils keeps what it can rebuild (cached activations, source-pretrained weights,
#: sweep results): ``$FTUTILS_CACHE``, else the platform's user cache folder (on Linux
#: ``~/.cache/ftutils``), never inside the installed package.
CACHE_DIR = Path(os.environ.get("FTUTILS_CACHE") or platformdirs.user_cache_dir("ftutils"))


def keras_home() -> Path:
    """The Keras cache folder: ``$KERAS_HOME`` if set, else ``~/.keras`` (Keras' own rule)."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))


def shown_path(path: Path) -> str:
    """``path`` as a notebook should print it: relative to the project or ``~``, never absolute.

    Committed notebook outputs must not carry one machine's folders.
    """
    path = Path(path).resolve()
    for root, name in ((PROJECT_DIR, "<project>"), (Path.home().resolve(), "~")):
        if path.is_relative_to(root):
            return str(Path(name) / path.relative_to(root))
    return str(path)


def set_seed(seed: int) -> None:
    """Seed Python, NumPy's legacy global state, TensorFlow and Keras at once."""
    import keras

    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block as after ``set_seed(seed)``; afterwards every generator is as before.

    A library call that needs reproducible draws (the heads of ``recipe.feature_ensemble``)
    seeds inside this block, so the caller's Python, NumPy, TensorFlow and Keras generators
    are left where they were: the caller's next draws do not depend on the call.
    """
    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator
    from keras.src.utils import rng_utils
    from tensorflow.python.eager import context

    keras_names = (rng_utils.GLOBAL_RANDOM_SEED, seed_generator.GLOBAL_SEED_GENERATOR)
    keras_state = [global_state.get_global_attribute(name) for name in keras_names]
    python_state, numpy_state = random.getstate(), np.random.get_state()
    tf_context = context.context()  # TensorFlow's global seed and its op-seed generator
    tf_seed, tf_rng = tf_context._seed, getattr(tf_context, "_rng", None)
    tf_rng_state = tf_rng.getstate() if tf_rng is not None else None
    set_seed(seed)
    try:
        yield
    finally:
        for name, value in zip(keras_names, keras_state, strict=True):
            global_state.set_global_attribute(name, value)
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        tf_context._seed = tf_seed
        if tf_rng is not None:
            tf_rng.setstate(tf_rng_state)
        tf_context._rng = tf_rng


def _environment_table(summary: dict) -> str:
    """The summary as aligned ``key: value`` lines, long lists one item per line."""
    lines = []
    for key, value in summary.items():
        if isinstance(value, list) and len(value) > 3:
            lines.append(f"{key:>16}: {len(value)} files")
            lines.extend(f"{'':>18}{item}" for item in value)
        else:
            lines.append(f"{key:>16}: {value}")
    return "\n".join(lines)


class _CollapsedTable:
    """The full environment table: collapsed in Jupyter and on the site, whole as text."""

    def __init__(self, table: str):
        self.table = table

    def __repr__(self) -> str:
        return self.table

    def _repr_html_(self) -> str:
        return (
            "<details><summary>运行环境详情 · environment details</summary>"
            f"<pre>{html.escape(self.table)}</pre></details>"
        )


def _show_environment(summary: dict) -> None:
    """One line for the reader; under IPython the full table follows, collapsed."""
    print(
        f"TensorFlow {summary['tensorflow']} · Keras {summary['keras']} · "
        f"{'+'.join(summary['devices'])} · {summary['replicas']} replica(s) · "
        f"{summary['precision']} · seed {summary['seed']}"
    )
    try:
        from IPython import get_ipython
        from IPython.display import display

        shell = get_ipython()
    except ImportError:
        shell = None
    if shell is not None:
        display(_CollapsedTable(_environment_table(summary)))
    else:
        print(_environment_table(summary))


def setup(
    seed: int = 0,
    verbose: bool = True,
    *,
    strategy: str | None = None,
    precision: str | None = None,
    deterministic: bool | None = None,
) -> dict:
    """Make a notebook reproducible and print what it runs on.

    Chooses the distribution strategy, the precision policy and op determinism first
    (``ftutils.distribute.configure``: arguments left ``None`` come from the
    ``FTUTILS_STRATEGY`` / ``FTUTILS_PRECISION`` / ``FTUTILS_DETERMINISTIC`` environment
    variables, else ``auto``), then seeds every generator. Returns the environment summary
    as a dict; when ``verbose``, prints it as one line with the whole table under it
    (collapsed in Jupyter and on the site).
    """
    import keras
    import tensorflow as tf

    from ftutils import distribute, fonts

    distribute.configure(strategy, precision, deterministic)  # before TensorFlow starts
    pd.set_option("display.max_colwidth", None)  # the article-vs-measured tables hold sentences
    tf.get_logger().setLevel("ERROR")  # retracing notices from repeated predict() calls
    set_seed(seed)
    home = keras_home()
    summary = {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "devices": [d.device_type for d in tf.config.list_physical_devices()],
        **distribute.describe(),
        "seed": seed,
        "cjk_font": fonts.use_cjk_font() or "none: Chinese shows as boxes (pip install mplfonts)",
        "keras_home": shown_path(home),
        "cached_weights": sorted(p.name for p in (home / "models").glob("*.h5")),
        "cached_datasets": sorted(p.name for p in (home / "datasets").glob("*") if p.is_dir()),
    }
    if verbose:
        _show_environment(summary)
    return summary
