"""Live MLflow logging: a Tune callback that opens, fills and closes each trial's child run."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from ray.tune import Callback

from orchestrator import faults
from orchestrator.outcomes import trial_outcome
from orchestrator.tracking.runs import SweepRuns
from orchestrator.uris import redact_in

logger = logging.getLogger(__name__)


class MLflowLiveLogger(Callback):
    """Logs each trial's results to its child run as they arrive, at most once a second per trial,
    and closes the run when the trial ends.

    MLflow being down never stops training: results and endings stay pending and are retried, and
    the end-of-sweep replay (`SweepRuns` fed from Ray's records) fills any gap. `links` (the
    searcher) gives each trial's Optuna number and learns its run id."""

    def __init__(self, runs: SweepRuns, links=None, flush_every_s: float = 1.0, retry_every_s: float = 30.0):
        self.runs = runs
        self.links = links
        self.flush_every_s = flush_every_s
        self.retry_every_s = retry_every_s  # while MLflow is failing
        self._failing = False
        self._pending: dict[str, list[dict]] = {}
        self._ending: dict[str, _Ending] = {}  # trials that ended, their runs not yet closed
        self._trials: dict[str, dict] = {}  # trial id -> config, for late run creation
        self._last_flush = 0.0
        self._warned = False

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_pending": {}, "_ending": {}, "_trials": {}, "_warned": False, "_failing": False}

    def on_trial_start(self, iteration, trials, trial, **info):
        self._trials[trial.trial_id] = dict(trial.config)
        self._ending.pop(trial.trial_id, None)
        self._guarded(self._open, trial.trial_id)

    on_trial_restore = on_trial_start

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._pending.setdefault(trial.trial_id, []).append(result)
        faults.reach("result")

    def on_step_end(self, iteration, trials, **info):
        wait = self.flush_every_s if not self._failing else self.retry_every_s
        if time.monotonic() - self._last_flush >= wait:
            self.flush()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._ended(trial, errored=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        error = ""
        if trial.error_file:
            try:
                error = Path(trial.error_file).read_text()  # the driver's own copy of the trial's error
            except OSError:
                pass
        self._ended(trial, errored=True, error=error)

    def _ended(self, trial, *, errored: bool, error: str = "") -> None:
        last = dict(trial.last_result or {})
        self._ending[trial.trial_id] = _Ending(last, errored=errored, error=error, at_ms=int(time.time() * 1000))
        self.flush(trial.trial_id)
        faults.reach("trial-end")

    def on_experiment_end(self, trials, **info):
        self.flush()

    def flush(self, trial_id: str | None = None) -> None:
        for tid in [trial_id] if trial_id else list(self._pending):
            results = self._pending.get(tid)
            if results and tid not in self._ending and self._guarded(self._log, tid, results):
                del self._pending[tid]
        for tid in [trial_id] if trial_id else list(self._ending):
            if tid in self._ending and self._guarded(self._close, tid):  # its last results go with the closing
                del self._ending[tid]
                self._pending.pop(tid, None)
        self._last_flush = time.monotonic()

    def _run(self, trial_id: str) -> str:
        number = self.links.optuna_number(trial_id) if self.links is not None else None
        return self.runs.child(trial_id, self._trials.get(trial_id, {}), optuna_number=number)

    def _open(self, trial_id: str) -> None:
        run_id = self._run(trial_id)
        self.runs.reopen(trial_id)
        if self.links is not None:
            self.links.link_run(trial_id, run_id)

    def _log(self, trial_id: str, results: list[dict]) -> None:
        self._run(trial_id)
        self.runs.log_epochs(trial_id, results)

    def _close(self, trial_id: str) -> None:
        self._run(trial_id)
        ending = self._ending[trial_id]
        runs = self.runs
        objectives = (runs.metric, *runs.others)
        outcome = trial_outcome(ending.last, errored=ending.errored, max_epochs=runs.max_epochs, metric=objectives)
        last_epoch = int(ending.last.get("epoch", 0))
        runs.finish_child(
            trial_id,
            outcome,
            last_epoch=last_epoch,
            error=ending.error,
            end_time_ms=ending.at_ms,
            results=self._pending.get(trial_id, []),
        )

    def _guarded(self, call, *args) -> bool:
        try:
            call(*args)
            self._failing = False
            return True
        except Exception as exc:  # noqa: BLE001 - any MLflow failure: keep training, replay later
            self._failing = True
            if not self._warned:
                logger.warning(
                    "MLflow is unavailable (%s); training goes on and results are replayed "
                    "into MLflow when the sweep ends (or by `orchestrator sync`)",
                    redact_in(str(exc), self.runs.tracking_uri)[:200],
                )
                self._warned = True
            return False


@dataclass(frozen=True)
class _Ending:
    last: dict  # the trial's last result
    errored: bool
    error: str
    at_ms: int
