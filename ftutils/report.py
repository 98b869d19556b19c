"""The closing section of every notebook: "what the article says vs what we measured".

A *verdict* is a claim about the article that the experiment could have refuted. Under the
tests (``FTUTILS_STRICT_VERDICTS=1``, set by ``make test``) a verdict that does not hold
raises; for a reader who changed the parameters it prints ``NOT CONFIRMED with these
parameters`` and the notebook reads on. Constants, API facts and identities are sanity
checks: plain ``assert`` statements, never verdicts.

Two kinds of verdict over seeds: :func:`exceeds` (a paired difference above a margin and
above its own spread) and :func:`mean_bound` (the interval of the mean difference lies beyond
a margin: it says what size of effect the seeds rule out).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

STRICT_ENV = "FTUTILS_STRICT_VERDICTS"


def strict() -> bool:
    """Whether a verdict that does not hold raises (tests) instead of printing (readers)."""
    return os.environ.get(STRICT_ENV, "0") == "1"


def verdict(claim: str, passed: bool, evidence: str = "") -> bool:
    """Print one verdict line; return whether it held.

    The line of a confirmed verdict carries no measured numbers, so a regression test
    compares the conclusion, not the 4th decimal; the numbers appear when it does not hold.
    """
    if passed:
        print(f"CONFIRMED: {claim}")
        return True
    message = f"NOT CONFIRMED with these parameters: {claim} ({evidence})"
    if strict():
        raise AssertionError(message)
    print(message)
    return False


def over_seeds(values: Sequence[float]) -> str:
    """``mean ± sample standard deviation (n seeds)`` of one measurement repeated over seeds."""
    values = np.asarray(values, dtype=float)
    spread = values.std(ddof=1) if values.size > 1 else 0.0
    return f"{values.mean():.3f} ± {spread:.3f} ({values.size} seeds)"


def exceeds(claim: str, higher: Sequence[float], lower: Sequence[float], margin: float) -> bool:
    """Verdict that ``higher`` beats ``lower``, both measured on the same seeds.

    It holds when the mean paired difference exceeds both ``margin`` (chosen before looking)
    and the seed-to-seed spread of that difference. Pass ``margin=0`` for "higher, by more
    than the noise". Needs at least 3 seeds.
    """
    higher, lower = np.asarray(higher, dtype=float), np.asarray(lower, dtype=float)
    if higher.shape != lower.shape or higher.size < 3:
        raise ValueError(
            f"exceeds() compares paired results over at least 3 seeds; got {higher.size} and "
            f"{lower.size}. Run both settings on the same 3 or more seeds."
        )
    difference = higher - lower
    threshold = max(margin, difference.std(ddof=1))
    evidence = (
        f"{over_seeds(higher)} vs {over_seeds(lower)}; difference {over_seeds(difference)}, "
        f"needed > {threshold:.3f}"
    )
    return verdict(claim, difference.mean() > threshold, evidence)


def comparison_table(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    """A table of (topic, what the article says, what this notebook measured)."""
    return pd.DataFrame(rows, columns=["topic", "article says", "we measured"])


def t_quantile(probability: float, df: int) -> float:
    """The ``probability`` quantile (> 0.5) of Student's t distribution with ``df`` degrees of
    freedom, by integrating its density numerically (no SciPy needed): 2.776 for
    ``(0.975, 4)``, 2.262 for ``(0.975, 9)``, towards 1.960 as ``df`` grows."""
    if not 0.5 < probability < 1 or df < 1:
        raise ValueError(f"need 0.5 < probability < 1 and df >= 1, got {probability}, {df}")
    scale = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    x = np.linspace(0.0, 200.0, 400_001)
    density = scale * (1 + x**2 / df) ** (-(df + 1) / 2)
    cdf = 0.5 + np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2 * np.diff(x))])
    return float(np.interp(probability, cdf, x))


def mean_interval(
    values: Sequence[float], confidence: float = 0.95, *, z: float | None = None
) -> tuple[float, float]:
    """The ``confidence`` interval of the mean of ``values`` (e.g. paired differences over
    seeds): mean ± t × standard error, Student's t on n - 1 degrees of freedom; or, given
    ``z``, mean ± ``z`` standard errors (``z=2`` with ten seeds is close to t's 2.26)."""
    values = np.asarray(values, dtype=float)
    if values.size < 3:
        raise ValueError(f"an interval over seeds needs at least 3 values, got {values.size}")
    width = z if z is not None else t_quantile(0.5 + confidence / 2, values.size - 1)
    half = width * values.std(ddof=1) / np.sqrt(values.size)
    return float(values.mean() - half), float(values.mean() + half)


def mean_bound(
    claim: str,
    differences: Sequence[float],
    *,
    more_than: float | None = None,
    less_than: float | None = None,
    confidence: float = 0.95,
    z: float | None = None,
) -> bool:
    """Verdict on the mean of paired ``differences`` (one per seed), its uncertainty included:
    it holds when the whole interval of the mean (:func:`mean_interval`, with ``confidence``
    or ``z``) lies above ``more_than`` and/or below ``less_than``. So a claim "no advantage
    of ``less_than`` or more" rules that size out, and "higher by more than ``more_than``"
    rules out everything at or below it. A one-sided 95 % bound is one end of the 90 %
    interval: ``confidence=0.90``."""
    if more_than is None and less_than is None:
        raise ValueError("give more_than, less_than or both")
    low, high = mean_interval(differences, confidence, z=z)
    passed = (more_than is None or low > more_than) and (less_than is None or high < less_than)
    interval = f"mean ± {z:g} SE" if z is not None else f"{confidence:.0%} interval of the mean"
    evidence = f"difference {over_seeds(differences)}, {interval} [{low:+.3f}, {high:+.3f}]"
    return verdict(claim, passed, evidence)
