"""How a trial ended and what it reached: the one rule that MLflow, Optuna, the console, the
report and `orchestrator check` all apply to a trial's records."""

from __future__ import annotations

import math
from dataclasses import dataclass

COMPLETED, PRUNED, ERRORED, DIVERGED = "completed", "pruned", "errored", "diverged"
OUTCOMES = (COMPLETED, PRUNED, ERRORED, DIVERGED)


def finite(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def trial_outcome(last: dict | None, *, errored: bool, max_epochs: int, metric: str | None = None) -> str:
    """completed (reached max_epochs), pruned (stopped earlier), errored, or diverged (the
    trial flagged a non-finite loss, or its objective is not a finite number)."""
    last = last or {}
    if errored:
        return ERRORED
    if last.get("diverged") or (metric is not None and last and not finite(last.get(metric))):
        return DIVERGED
    return COMPLETED if last.get("epoch", 0) >= max_epochs else PRUNED


@dataclass(frozen=True)
class TrialSummary:
    outcome: str
    last_epoch: int  # epochs run
    final: float | None  # the objective at the last epoch (finite only)
    best: float | None  # the best finite objective over the epochs
    best_epoch: int | None


def summarize(records: list[dict], *, errored: bool, max_epochs: int, metric: str, mode: str) -> TrialSummary:
    """A trial's outcome and objective from its per-epoch records (oldest first)."""
    last = records[-1] if records else {}
    scored = [(int(r["epoch"]), float(r[metric])) for r in records if finite(r.get(metric)) and "epoch" in r]
    sign = 1 if mode == "max" else -1
    best_epoch, best = max(scored, key=lambda p: (sign * p[1], -p[0])) if scored else (None, None)
    final = float(last[metric]) if finite(last.get(metric)) else None
    return TrialSummary(
        outcome=trial_outcome(last, errored=errored, max_epochs=max_epochs, metric=metric),
        last_epoch=int(last.get("epoch", 0)),
        final=final,
        best=best,
        best_epoch=best_epoch,
    )


def better(a: float, b: float | None, mode: str) -> bool:
    """Whether `a` beats `b` under the objective's mode (anything beats None)."""
    return b is None or (a > b if mode == "max" else a < b)
