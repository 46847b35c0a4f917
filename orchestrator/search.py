"""Optuna search with correct fidelity, and the ASHA scheduler.

Ray's stock `OptunaSearch.on_trial_complete` tells Optuna that a trial ASHA stopped early is
COMPLETE with its low-epoch value; TPE then treats a 2-epoch accuracy as if it were the final
one. `FidelityOptunaSearch` tells such a trial PRUNED (its intermediate values, keyed by
epoch, stay in the study), only trials that reached `max_epochs` COMPLETE, and errored or
diverged trials FAIL.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search.optuna import OptunaSearch

from orchestrator.spec import SweepSpec

logger = logging.getLogger(__name__)


def open_study_storage(location: str) -> optuna.storages.BaseStorage:
    """The Optuna storage at `location`: an RDB URL (sqlite://, postgresql://, mysql://), or the
    path of a journal file, the default. A journal file keeps the study in memory and appends each
    change to the file, so a suggestion reads no database: about half the time per suggestion of an
    SQLite study at 1,000 trials (benchmarks/searcher.py). optuna-dashboard opens either."""
    if "://" in location:
        return optuna.storages.RDBStorage(location)
    Path(location).parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(location))


class FidelityOptunaSearch(OptunaSearch):
    def __init__(self, *args: Any, max_epochs: int, epoch_attr: str = "epoch", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._max_epochs = max_epochs
        self._epoch_attr = epoch_attr
        self._unrecorded: list[optuna.trial.FrozenTrial] | None = []  # a fresh sweep has none

    # After a driver restart Ray restores this searcher from its last snapshot, while the Optuna
    # study lives on in its database and may already hold a trial's outcome. The study wins:
    # a trial it has finished is never reported to or told again, and a trial it handed out
    # after the snapshot (so Ray never recorded it) is handed out again instead of a new one.

    def suggest(self, trial_id: str) -> dict | None:
        if trial_id not in self._ot_trials:
            orphan = self._unrecorded_trial()
            if orphan is not None:
                # Its parameters are already in the study, so the define-by-run space replays them.
                self._ot_trials[trial_id] = optuna.Trial(self._ot_study, orphan._trial_id)
        return super().suggest(trial_id)

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        self._unrecorded = None  # looked up in the study at the next suggestion

    def _unrecorded_trial(self) -> optuna.trial.FrozenTrial | None:
        """A RUNNING study trial that no Ray trial owns: asked for by a driver that then died."""
        if self._unrecorded is None:  # once per restore, so suggestions stay one study query cheap
            owned = {trial._trial_id for trial in self._ot_trials.values()}
            running = self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            self._unrecorded = [trial for trial in running if trial._trial_id not in owned]
        return self._unrecorded.pop(0) if self._unrecorded else None

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        value = result.get(self.metric)
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        if value is None or not math.isfinite(value):
            return
        try:
            # Keyed by epoch, not training_iteration, so a restored trial reports the same steps.
            self._ot_trials[trial_id].report(value, result[self._epoch_attr])
        except UpdateFinishedTrialError:
            self._completed_trials.add(trial_id)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        state, value = self.outcome_to_state(result, error)
        try:
            self._ot_study.tell(self._ot_trials[trial_id], value, state=state)
        except UpdateFinishedTrialError:
            pass  # told before a driver restart
        except (ValueError, RuntimeError) as exc:
            logger.warning("could not tell Optuna about trial %s: %s", trial_id, exc)
        self._completed_trials.add(trial_id)

    def outcome_to_state(self, result: dict | None, error: bool) -> tuple[TrialState, float | None]:
        result = result or {}
        value = result.get(self.metric)
        if error or result.get("diverged") or value is None or not math.isfinite(value):
            return TrialState.FAIL, None
        if result.get(self._epoch_attr, 0) >= self._max_epochs:
            return TrialState.COMPLETE, float(value)
        return TrialState.PRUNED, None  # Optuna records the last intermediate value


def make_sampler(spec: SweepSpec) -> optuna.samplers.BaseSampler:
    seed = spec.search.seed
    if spec.search.algorithm == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.search.algorithm == "grid":
        grid = {name: list(p.choices) for name, p in spec.searched.items()}
        return optuna.samplers.GridSampler(grid, seed=seed)
    # group=True models conditional parameters jointly; constant_liar keeps parallel
    # suggestions from piling onto the same point while earlier trials are running.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # `group` is stable in practice
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True)


class BaselineASHA(ASHAScheduler):
    """ASHA that lets the spec's baselines run to max_t: they are reference points, and a
    reference stopped at epoch 2 tells the user nothing. They still count in the rungs."""

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        if action == TrialScheduler.STOP and trial.config.get("baseline") is not None:
            if result.get(self._time_attr, 0) < self._max_t:
                self._num_stopped -= 1
                return TrialScheduler.CONTINUE
        return action


def make_scheduler(spec: SweepSpec) -> TrialScheduler:
    es = spec.early_stopping
    if es.scheduler == "none":
        return FIFOScheduler()
    return BaselineASHA(
        time_attr="epoch", max_t=es.max_epochs, grace_period=es.grace_period, reduction_factor=es.reduction_factor
    )
