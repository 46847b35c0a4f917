"""Console progress: one line per finished trial, instead of Ray's per-result tables."""

from __future__ import annotations

import math

from ray.tune import Callback

from orchestrator.outcomes import trial_outcome

SHOWN_PARAMS = ("backbone", "transfer_layers", "unfreeze", "lr")


class TrialLines(Callback):
    def __init__(self, total: int, metric: str, mode: str, max_epochs: int):
        self.total, self.metric, self.mode, self.max_epochs = total, metric, mode, max_epochs
        self.done = 0
        self.best: float | None = None

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._line(trial, errored=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._line(trial, errored=True)

    def _line(self, trial, errored: bool) -> None:
        self.done += 1
        last = trial.last_result or {}
        outcome = trial_outcome(last, errored=errored, max_epochs=self.max_epochs)
        value = last.get(self.metric)
        if outcome == "completed" and isinstance(value, float) and math.isfinite(value):
            better = self.best is None or (value > self.best if self.mode == "max" else value < self.best)
            self.best = value if better else self.best
        shown = f"{self.metric} {value:.3f}" if isinstance(value, float) else f"{self.metric} -"
        best = f"best {self.best:.3f}" if self.best is not None else ""
        params = " ".join(f"{k}={_short(trial.config[k])}" for k in SHOWN_PARAMS if k in trial.config)
        print(
            f"[{self.done:>3}/{self.total}] {trial.trial_id} {outcome:<9} epoch {last.get('epoch', 0):>3}  "
            f"{shown}  {best:<10}  {params}",
            flush=True,
        )


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
