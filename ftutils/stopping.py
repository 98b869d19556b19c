"""Stopping rules applied to a recorded training curve (§3.2).

Gradient descent is deterministic once its start and its batches are fixed, so stopping it at
step t gives the weights it had at step t of a longer run. A rule can therefore be applied
after the fact to the curves of one run of the longest budget (entry 0: the start, entry t:
after step t), and several rules compared on the very same run.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def tolerance_stop(losses: Sequence[float], tol: float) -> int:
    """The article's rule (§3.2, "直到损失函数停止下降或达到预定阈值"): the first step whose
    training loss fell by less than ``tol`` from the step before, where training stops; the
    last step when no step does (the budget ran out). ``losses[0]`` is the loss at the start.
    """
    losses = np.asarray(losses, dtype=float)
    if losses.ndim != 1 or losses.size < 2:
        raise ValueError(f"need a 1-D curve of at least 2 losses, got shape {losses.shape}")
    small = np.flatnonzero(losses[:-1] - losses[1:] < tol)
    return int(small[0]) + 1 if small.size else losses.size - 1


def early_stop(val_losses: Sequence[float], patience: int) -> tuple[int, int]:
    """Early stopping on the validation loss: ``(stopped, best)``. Training stops at the first
    step ``patience`` steps after the lowest validation loss so far without a lower one (or at
    the last step), and the weights of step ``best``, the lowest loss up to then, are kept.
    """
    val_losses = np.asarray(val_losses, dtype=float)
    if val_losses.ndim != 1 or val_losses.size < 1:
        raise ValueError(f"need a 1-D curve of validation losses, got shape {val_losses.shape}")
    if patience < 1:
        raise ValueError(f"patience must be at least 1 step, got {patience}")
    best = 0
    for step in range(1, val_losses.size):
        if val_losses[step] < val_losses[best]:
            best = step
        elif step - best >= patience:
            return step, best
    return val_losses.size - 1, best


def threshold_stop(losses: Sequence[float], threshold: float | None, tol: float | None) -> int:
    """The article's rule in full (§3.2, "直到损失函数停止下降或达到预定阈值"): the first step
    whose training loss is at or below ``threshold``, or fell by less than ``tol`` from the
    step before, whichever comes first; the last step when neither happens. ``None`` leaves
    that half of the rule out (``threshold_stop(losses, None, tol)`` is
    :func:`tolerance_stop`). ``losses[0]`` is the loss at the start.
    """
    if threshold is None and tol is None:
        raise ValueError("give a threshold, a tolerance or both")
    losses = np.asarray(losses, dtype=float)
    if losses.ndim != 1 or losses.size < 2:
        raise ValueError(f"need a 1-D curve of at least 2 losses, got shape {losses.shape}")
    last = losses.size - 1
    reached = last
    if threshold is not None:
        below = np.flatnonzero(losses[1:] <= threshold)
        reached = int(below[0]) + 1 if below.size else last
    flat = tolerance_stop(losses, tol) if tol is not None else last
    return min(reached, flat)
