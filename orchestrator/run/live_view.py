"""What a sweep is doing now, for the person watching it.

One line per trial as it ends (`[ 12/24] a1b2c3d4 pruned    epoch   2  val_acc 0.61 ...`), and
a view of the running trials: in a terminal a block redrawn in place under those lines (each
running trial's epoch out of the maximum, last value and time; counts of outcomes; the best so
far; an estimate of the time left); when the output is not a terminal (Kubernetes logs, a pipe),
the same as a plain status line every `status_every_s` seconds.
"""

from __future__ import annotations

import math
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from ray.tune import Callback

from orchestrator.outcomes import COMPLETED, better, finite, trial_outcome

SHOWN_PARAMS = ("backbone", "transfer_layers", "unfreeze", "lr")
REDRAW_EVERY_S = 0.5
STATUS_EVERY_S = 30.0


@dataclass
class _Running:
    config: dict
    started: float
    epoch: int = 0
    value: float | None = None


@dataclass
class _Progress:
    total: int
    ended: int = 0
    outcomes: Counter = field(default_factory=Counter)
    best: float | None = None
    best_trial: str = ""
    epochs_of_ended: list[int] = field(default_factory=list)
    epochs_run: int = 0  # in this run of the driver, for the rate


class LiveView(Callback):
    def __init__(self, total: int, metric: str, mode: str, max_epochs: int, *, already_ended: int = 0, stream=None):
        self.metric, self.mode, self.max_epochs = metric, mode, max_epochs
        self.stream = stream
        self.progress = _Progress(total=total, ended=already_ended)
        self.running: dict[str, _Running] = {}
        self.started = time.monotonic()
        self._drawn_lines = 0
        self._last_draw = self.started  # the first status line comes a period in, not at once

    def __getstate__(self) -> dict:
        return {**self.__dict__, "stream": None, "running": {}, "_drawn_lines": 0}

    @property
    def out(self):
        return self.stream or sys.stdout

    @property
    def interactive(self) -> bool:
        return bool(getattr(self.out, "isatty", lambda: False)())

    # -- Tune's hooks ---------------------------------------------------------------------
    def on_trial_start(self, iteration, trials, trial, **info):
        self.running[trial.trial_id] = _Running(config=dict(trial.config), started=time.monotonic())

    on_trial_restore = on_trial_start

    def on_trial_result(self, iteration, trials, trial, result, **info):
        view = self.running.get(trial.trial_id)
        if view is not None:
            view.epoch = int(result.get("epoch", view.epoch))
            view.value = float(result[self.metric]) if finite(result.get(self.metric)) else None
        self.progress.epochs_run += 1

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._ended(trial, errored=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._ended(trial, errored=True)

    def on_step_end(self, iteration, trials, **info):
        now = time.monotonic()
        if self.interactive and now - self._last_draw >= REDRAW_EVERY_S:
            self._redraw(now)
        elif not self.interactive and now - self._last_draw >= STATUS_EVERY_S:
            print(self.status_line(now), file=self.out, flush=True)
            self._last_draw = now

    def on_experiment_end(self, trials, **info):
        self._clear()

    # -- what is shown --------------------------------------------------------------------
    def _ended(self, trial, errored: bool) -> None:
        last = trial.last_result or {}
        outcome = trial_outcome(last, errored=errored, max_epochs=self.max_epochs, metric=self.metric)
        value = last.get(self.metric)
        p = self.progress
        p.ended += 1
        p.outcomes[outcome] += 1
        p.epochs_of_ended.append(int(last.get("epoch", 0)))
        if outcome == COMPLETED and finite(value) and better(float(value), p.best, self.mode):
            p.best, p.best_trial = float(value), trial.trial_id
        self.running.pop(trial.trial_id, None)
        shown = f"{self.metric} {value:.3f}" if finite(value) else f"{self.metric} -"
        best = f"best {p.best:.3f}" if p.best is not None else ""
        line = (
            f"[{p.ended:>3}/{p.total}] {trial.trial_id} {outcome:<9} epoch {last.get('epoch', 0):>3}  "
            f"{shown}  {best:<10}  {_params(trial.config)}"
        )
        self._clear()
        print(line, file=self.out, flush=True)
        if self.interactive:
            self._redraw(time.monotonic())

    def status_line(self, now: float, *, running: bool = True) -> str:
        p = self.progress
        counts = ", ".join(f"{n} {k}" for k, n in sorted(p.outcomes.items())) or "none ended yet"
        trials = ", ".join(f"{tid} {v.epoch}/{self.max_epochs}" for tid, v in self.running.items()) or "none"
        best = f"best {self.metric} {p.best:.4g} ({p.best_trial})" if p.best is not None else "no completed trial yet"
        return (
            f"status: {p.ended}/{p.total} trials ended ({counts}); "
            + (f"running: {trials}; " if running else "")
            + f"{best}; elapsed {_duration(now - self.started)}, {self._left(now)}"
        )

    def block(self, now: float) -> list[str]:
        """The live view's lines."""
        lines = [self.status_line(now, running=False).removeprefix("status: ")]  # the table lists them
        if self.running:
            lines.append(f"  {'running':<10} {'epoch':>7}  {self.metric:>8}  {'time':>7}  {' / '.join(SHOWN_PARAMS)}")
            for trial_id, view in self.running.items():
                value = f"{view.value:.3f}" if view.value is not None else "-"
                lines.append(
                    f"  {trial_id:<10} {view.epoch:>3}/{self.max_epochs:<3}  {value:>8}  "
                    f"{_duration(now - view.started):>7}  {_params(view.config, names=False)}"
                )
        return lines

    def _left(self, now: float) -> str:
        """Remaining trial-epochs (the trials not ended, at the epochs ended trials ran, less what the
        running ones did) over the rate of epochs so far."""
        p = self.progress
        elapsed = now - self.started
        if not p.epochs_of_ended or not p.epochs_run or elapsed <= 0:
            return "time left: estimating"
        per_trial = sum(p.epochs_of_ended) / len(p.epochs_of_ended)
        remaining = (p.total - p.ended) * per_trial - sum(v.epoch for v in self.running.values())
        seconds = max(0.0, remaining) / (p.epochs_run / elapsed)
        return f"about {_duration(seconds)} left"

    def _redraw(self, now: float) -> None:
        self._clear()
        lines = self.block(now)
        self.out.write("".join(line + "\n" for line in lines))
        self.out.flush()
        self._drawn_lines, self._last_draw = len(lines), now

    def _clear(self) -> None:
        if self._drawn_lines and self.interactive:
            self.out.write(f"\x1b[{self._drawn_lines}F\x1b[J")  # up to the block's first line, then erase below
            self.out.flush()
        self._drawn_lines = 0


def _params(config: dict, names: bool = True) -> str:
    shown = [(k, config[k]) for k in SHOWN_PARAMS if k in config]
    return " ".join(f"{k}={_short(v)}" if names else _short(v) for k, v in shown)


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds)) if math.isfinite(seconds) else 0
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
