"""The closing section of every notebook: "what the article says vs what we measured".

A *verdict* is a claim about the article that the experiment could have refuted. Under the
tests (``FTUTILS_STRICT_VERDICTS=1``, set by ``make test``) a verdict that does not hold
raises; for a reader who changed the parameters it prints ``NOT CONFIRMED with these
parameters`` and the notebook reads on. Constants, API facts and identities are sanity
checks: plain ``assert`` statements, never verdicts.

Three kinds of verdict over seeds: :func:`exceeds` (a paired difference above a margin and
above its own spread); :func:`mean_above` / :func:`mean_below` (the mean difference's
interval of ± 2 standard errors clears a margin: for the ten-seed studies, where Student's t
quantile is close to 2); and :func:`below` (a one-sided Student-t bound, for three to five
seeds, where ± 2 standard errors would be too lenient).
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


def mean_interval(differences: Sequence[float], z: float = 2.0) -> tuple[float, float]:
    """(low, high): the mean of paired ``differences`` over seeds, minus and plus ``z``
    standard errors (sample standard deviation / sqrt(n)). With z = 2 each end is a one-sided
    bound at about 97.5 % under a normal approximation (about 96 % for 10 seeds, Student's t)."""
    differences = np.asarray(differences, dtype=float)
    if differences.size < 3:
        raise ValueError(f"a bound over seeds needs at least 3 of them, got {differences.size}")
    error = z * differences.std(ddof=1) / np.sqrt(differences.size)
    return differences.mean() - error, differences.mean() + error


def mean_above(claim: str, differences: Sequence[float], margin: float, z: float = 2.0) -> bool:
    """Verdict that the mean paired difference is above ``margin``: its lower bound
    (:func:`mean_interval`) clears the margin. Rules out a mean effect of ``margin`` or less."""
    low, high = mean_interval(differences, z)
    evidence = f"difference {over_seeds(differences)}, mean ± {z:g} SE {low:.3f} to {high:.3f}"
    return verdict(claim, low > margin, f"{evidence}, needed low end > {margin:.3f}")


def mean_below(claim: str, differences: Sequence[float], margin: float, z: float = 2.0) -> bool:
    """Verdict that the mean paired difference is below ``margin``: its upper bound
    (:func:`mean_interval`) stays under it. Rules out a mean effect of ``margin`` or more."""
    low, high = mean_interval(differences, z)
    evidence = f"difference {over_seeds(differences)}, mean ± {z:g} SE {low:.3f} to {high:.3f}"
    return verdict(claim, high < margin, f"{evidence}, needed high end < {margin:.3f}")


def t_quantile(probability: float, df: int) -> float:
    """The ``probability`` quantile (> 0.5) of Student's t distribution with ``df`` degrees
    of freedom, from its density integrated numerically (accurate to about 1e-6)."""
    if not 0.5 < probability < 1 or df < 1:
        raise ValueError("give a probability between 0.5 and 1 and at least 1 degree of freedom")
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def cdf(x: float) -> float:
        t = np.linspace(0.0, x, 20_001)
        density = np.exp(log_norm - (df + 1) / 2 * np.log1p(t**2 / df))
        return 0.5 + float(np.sum((density[1:] + density[:-1]) / 2) * (t[1] - t[0]))

    low, high = 0.0, 1.0
    while cdf(high) < probability:
        low, high = high, 2 * high
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if cdf(middle) < probability else (low, middle)
    return (low + high) / 2


def upper_bound(values: Sequence[float], confidence: float = 0.95) -> float:
    """One-sided upper confidence bound of the mean of ``values`` (seeds): mean + t * sd / sqrt(n),
    Student's t with n - 1 degrees of freedom."""
    values = np.asarray(values, dtype=float)
    if values.size < 3:
        raise ValueError(
            f"a confidence bound over seeds needs at least 3 of them; got {values.size}"
        )
    spread = values.std(ddof=1) / math.sqrt(values.size)
    return float(values.mean() + t_quantile(confidence, values.size - 1) * spread)


def below(claim: str, values: Sequence[float], bound: float, confidence: float = 0.95) -> bool:
    """Verdict that the mean of ``values`` (one measurement over seeds, e.g. a paired
    difference) is below ``bound``: its one-sided ``confidence`` upper bound is. It rules out
    a mean of ``bound`` or more; for "above", pass the negated values and bound."""
    top = upper_bound(values, confidence)
    evidence = f"{over_seeds(values)}; upper {confidence:.0%} bound {top:.3f}, needed < {bound:.3f}"
    return verdict(claim, top < bound, evidence)


def comparison_table(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    """A table of (topic, what the article says, what this notebook measured)."""
    return pd.DataFrame(rows, columns=["topic", "article says", "we measured"])
