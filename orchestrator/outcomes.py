"""How a trial ended and what it reached: the one rule that MLflow, Optuna, the console, the
report and `orchestrator check` all apply to a trial's records."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

COMPLETED, PRUNED, ERRORED, DIVERGED = "completed", "pruned", "errored", "diverged"
# Over a deployment budget (`constraints` in the spec): the trial reported its costs before its
# first epoch and stopped there, so it never trained.
INFEASIBLE = "infeasible"
OUTCOMES = (COMPLETED, PRUNED, INFEASIBLE, ERRORED, DIVERGED)


def finite(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def trial_outcome(
    last: dict | None, *, errored: bool, max_epochs: int, metric: str | Sequence[str] | None = None
) -> str:
    """completed (reached max_epochs), pruned (stopped earlier), infeasible (over a budget, stopped
    before epoch 1), errored, or diverged (the trial flagged a non-finite loss, or one of its
    objectives, `metric`, is not a finite number)."""
    last = last or {}
    if errored:
        return ERRORED
    if last.get("infeasible"):
        return INFEASIBLE
    metrics = [metric] if isinstance(metric, str) else list(metric or ())
    if last.get("diverged") or (last and any(not finite(last.get(m)) for m in metrics)):
        return DIVERGED
    return COMPLETED if last.get("epoch", 0) >= max_epochs else PRUNED


@dataclass(frozen=True)
class TrialSummary:
    outcome: str
    last_epoch: int  # epochs run (0: none, e.g. an infeasible trial)
    final: float | None  # the objective at the last epoch (finite only)
    best: float | None  # the best finite objective over the epochs
    best_epoch: int | None
    finals: tuple[float | None, ...] = ()  # every objective at the last epoch, the first one first


def summarize(
    records: list[dict], *, errored: bool, max_epochs: int, metric: str, mode: str, others: Sequence[str] = ()
) -> TrialSummary:
    """A trial's outcome and objective from its per-epoch records (oldest first); `others` are the
    further objectives of a sweep with several."""
    last = records[-1] if records else {}
    scored = [(int(r["epoch"]), float(r[metric])) for r in records if finite(r.get(metric)) and "epoch" in r]
    sign = 1 if mode == "max" else -1
    best_epoch, best = max(scored, key=lambda p: (sign * p[1], -p[0])) if scored else (None, None)
    finals = tuple(float(last[key]) if finite(last.get(key)) else None for key in (metric, *others))
    return TrialSummary(
        outcome=trial_outcome(last, errored=errored, max_epochs=max_epochs, metric=(metric, *others)),
        last_epoch=int(last.get("epoch", 0)),
        final=finals[0],
        best=best,
        best_epoch=best_epoch,
        finals=finals,
    )


def better(a: float, b: float | None, mode: str) -> bool:
    """Whether `a` beats `b` under the objective's mode (anything beats None)."""
    return b is None or (a > b if mode == "max" else a < b)
