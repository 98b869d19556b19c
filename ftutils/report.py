"""The closing section of every notebook: "what the article says vs what we measured"."""

from __future__ import annotations

import pandas as pd


def verdict(claim: str, passed: bool, evidence: str = "") -> None:
    """Print one verdict line for a robust conclusion; fail loudly when it does not hold.

    The printed line carries no measured numbers, so a regression test compares the
    conclusion, not the 4th decimal; the numbers appear only when the check fails.
    """
    if not passed:
        raise AssertionError(f"NOT CONFIRMED: {claim} ({evidence})")
    print(f"CONFIRMED: {claim}")


def comparison_table(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    """A table of (topic, what the article says, what this notebook measured)."""
    return pd.DataFrame(rows, columns=["topic", "article says", "we measured"])
