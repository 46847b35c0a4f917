"""The end-of-sweep pass: MLflow and the Optuna study made to agree with Ray's records.

Each trial the signed manifest lists is replayed from storage (result.json, filled from its
checkpoints' history; JSON only) into its MLflow child run, closed with its outcome, and its
Optuna trial is linked and, if a driver died before telling it, told. Idempotent: `sweep` runs
it at the end, `sync` runs it on its own. The best trial follows one rule (`pick_best`), and so
does the Pareto front of a sweep with several objectives (`pareto_trials`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from orchestrator import faults
from orchestrator.outcomes import COMPLETED, better, finite, summarize
from orchestrator.records import read_trial
from orchestrator.search import (
    MLFLOW_RUN_ID,
    OPTUNA_STATE,
    RAY_TRIAL_ID,
    pareto_front,
    record_costs,
    record_epoch,
)
from orchestrator.store import INTERRUPTED, Manifest, Storage, TrialEntry
from orchestrator.tracking import SweepRuns
from trainables.budgets import COSTS

ORPHANED = "orchestrator.orphaned"  # user attribute of a study trial no Ray trial ever ran


@dataclass(frozen=True)
class RecordedTrial:
    trial_id: str
    run_id: str
    config: dict
    outcome: str
    last_epoch: int
    final: float | None  # the objective at the last epoch
    last: dict  # the last epoch's record
    ended_at: float | None
    final_checkpoint: str | None
    finals: tuple[float | None, ...] = ()  # every objective at the last epoch, the first one first


@dataclass
class Recorded:
    trials: list[RecordedTrial]

    @property
    def outcomes(self) -> dict[str, int]:
        return dict(Counter(t.outcome for t in self.trials))


def record_trials(
    runs: SweepRuns,
    storage: Storage,
    sweep_id: str,
    manifest: Manifest,
    study: optuna.Study,
    *,
    replay: bool = True,
    budgets: dict[str, float] | None = None,
) -> Recorded:
    """Replay every trial into MLflow and the study (`budgets`: by reported cost metric, for the
    constraints of trials nobody told). `replay=False` only reads what the live path wrote (to test
    that path on its own)."""
    recorded = []
    for trial_id, entry in manifest.trials.items():
        faults.reach("recording")
        recorded.append(_record_trial(runs, storage, sweep_id, trial_id, entry, study, replay, budgets or {}))
    if replay:
        runs.remove_orphans(set(manifest.trials))
        if manifest.complete:  # an unfinished sweep still hands its unrecorded study trials out when it resumes
            close_orphaned_study_trials(study, set(manifest.trials))
    return Recorded(trials=recorded)


def _record_trial(runs, storage, sweep_id, trial_id, entry: TrialEntry, study, replay, budgets) -> RecordedTrial:
    trial = read_trial(storage.fs, storage.path(runs.experiment, sweep_id, trial_id))
    summary = summarize(
        trial.records,
        errored=entry.errored,
        max_epochs=runs.max_epochs,
        metric=runs.metric,
        mode=runs.mode,
        others=runs.others,
    )
    outcome = summary.outcome if entry.ended_at is not None else INTERRUPTED
    if replay:
        run_id = runs.child(trial_id, entry.config, optuna_number=entry.optuna_number)
        end_ms = int(entry.ended_at * 1000) if entry.ended_at is not None else None
        runs.finish_child(
            trial_id,
            outcome,
            last_epoch=summary.last_epoch,
            error=entry.error,
            end_time_ms=end_ms,
            results=trial.records,
        )
        if entry.ended_at is not None:
            keys = (runs.metric, *runs.others)
            _reconcile_study_trial(study, entry, trial_id, run_id, trial.records, outcome, keys, budgets)
    else:
        run_id = runs.find_child(trial_id) or ""
    return RecordedTrial(
        trial_id=trial_id,
        run_id=run_id,
        config=entry.config,
        outcome=outcome,
        last_epoch=summary.last_epoch,
        final=summary.final,
        last=trial.records[-1] if trial.records else {},
        ended_at=entry.ended_at,
        final_checkpoint=trial.final_checkpoint,
        finals=summary.finals,
    )


def study_trial(study: optuna.Study, trial_id: str, number: int | None) -> optuna.trial.FrozenTrial | None:
    """The Optuna trial of a Ray trial: by number when known, else by its `ray.trial_id` attribute."""
    trials = study.get_trials(deepcopy=False)
    if number is not None and 0 <= number < len(trials) and trials[number].number == number:
        return trials[number]
    return next((t for t in trials if t.user_attrs.get(RAY_TRIAL_ID) == trial_id), None)


def _reconcile_study_trial(study, entry: TrialEntry, trial_id, run_id, records, outcome, keys, budgets) -> None:
    """Link the study trial to its Ray trial and MLflow run, and tell it how it ended if nobody did."""
    frozen = study_trial(study, trial_id, entry.optuna_number)
    if frozen is None or frozen.state != TrialState.RUNNING:
        return  # told live (links are set while it runs), or never asked for (checked by `orchestrator check`)
    handle = optuna.Trial(study, frozen._trial_id)
    for key, value in ((RAY_TRIAL_ID, trial_id), (MLFLOW_RUN_ID, run_id)):
        if frozen.user_attrs.get(key) != value:
            handle.set_user_attr(key, value)
    for record in records:
        values = [record.get(key) for key in keys]
        if record.get("epoch", 0) >= 1 and not record.get("infeasible") and all(finite(v) for v in values):
            record_epoch(handle, values, int(record["epoch"]))
    last = records[-1] if records else {}
    record_costs(handle, {k: float(last[k]) for k in COSTS.values() if finite(last.get(k))}, budgets)
    state = OPTUNA_STATE[outcome]
    finals = [float(last[key]) for key in keys] if state == TrialState.COMPLETE else None
    try:
        study.tell(frozen.number, finals if finals is None or len(keys) > 1 else finals[0], state=state)
    except UpdateFinishedTrialError:
        pass


def close_orphaned_study_trials(study: optuna.Study, ray_trial_ids: set[str]) -> None:
    """Study trials still RUNNING that no Ray trial owns, once the sweep is over: asked for by a
    driver that died before Ray recorded them. Nothing will ever finish them."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.user_attrs.get(RAY_TRIAL_ID) not in ray_trial_ids:
            optuna.Trial(study, trial._trial_id).set_user_attr(ORPHANED, "driver restarted before Ray recorded it")
            study.tell(trial.number, state=TrialState.FAIL)


def pareto_trials(trials: list[RecordedTrial], modes: Sequence[str]) -> list[RecordedTrial]:
    """The completed trials (never an infeasible or pruned one) that no other completed trial
    dominates by its final objective values, the values Optuna was told; in the order they ended.
    With one objective, the trials tied at the best final value."""
    done = [t for t in _by_end(trials) if t.outcome == COMPLETED and t.finals and None not in t.finals]
    return [done[i] for i in pareto_front([t.finals for t in done], modes)]


def pick_best(trials: list[RecordedTrial], modes: Sequence[str]) -> RecordedTrial | None:
    """The completed trial with the best final (first) objective among those on the Pareto front (with
    one objective: among all completed trials); ties go to the trial that ended first."""
    best = None
    for trial in pareto_trials(trials, modes):
        if best is None or better(trial.finals[0], best.finals[0], modes[0]):
            best = trial
    return best


def _by_end(trials: list[RecordedTrial]) -> list[RecordedTrial]:
    return sorted(trials, key=lambda t: (t.ended_at if t.ended_at is not None else math.inf, t.trial_id))
