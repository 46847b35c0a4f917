"""The Optuna study of a sweep: where it is stored, and how its trials hold what Ray's trials did.

A trial's objectives at each epoch are its intermediate values. Optuna keeps no intermediate
values for a study with several objectives (`Trial.report` raises there), so such a trial keeps
them as user attributes, `values.epoch.<n>` = [objective values], written while it runs, as
intermediate values are. A trial's measured costs are a user attribute (`costs`), and with budgets
they are Optuna constraints too (`Trial.set_constraint`, cost / budget - 1: feasible at or below 0),
which TPE and NSGA-II read to learn where the feasible configs are.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import optuna
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import FrozenTrial, TrialState

from orchestrator.outcomes import COMPLETED, DIVERGED, ERRORED, INFEASIBLE, PRUNED

RAY_TRIAL_ID, MLFLOW_RUN_ID = "ray.trial_id", "mlflow.run_id"  # user attributes of each Optuna trial
EPOCH_VALUES = "values.epoch."  # user attribute prefix: a multi-objective trial's objectives at an epoch
COSTS_ATTR = "costs"  # user attribute: the costs a trial measured (parameters, MACs, latency)

# An infeasible trial is PRUNED with its constraints violated: TPE reads COMPLETE, PRUNED and
# RUNNING trials only (FAIL ones teach it nothing), and ranks any trial with a positive constraint
# as infeasible before looking at its state; COMPLETE would need a value it never had.
OPTUNA_STATE = {
    COMPLETED: TrialState.COMPLETE,
    PRUNED: TrialState.PRUNED,
    INFEASIBLE: TrialState.PRUNED,
    ERRORED: TrialState.FAIL,
    DIVERGED: TrialState.FAIL,
}


def open_study_storage(location: str) -> optuna.storages.BaseStorage:
    """The Optuna storage at `location`: an RDB URL (sqlite://, postgresql://, mysql://), or the
    path of a journal file, the default. A journal file keeps the study in memory and appends each
    change to the file, so a suggestion reads no database: about half the time per suggestion of an
    SQLite study at 1,000 trials (benchmarks/searcher.py). optuna-dashboard opens either."""
    if "://" in location:
        return optuna.storages.RDBStorage(location)
    Path(location).parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(location))


def record_epoch(trial: optuna.Trial, values: Sequence[float], epoch: int) -> None:
    """The objectives at `epoch`, once per epoch (a resumed trial repeats the epochs since its checkpoint)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is already reported")
        if len(values) == 1:
            trial.report(float(values[0]), epoch)
        else:
            trial.set_user_attr(f"{EPOCH_VALUES}{epoch}", [float(v) for v in values])


def epoch_values(trial: FrozenTrial) -> dict[int, tuple[float, ...]]:
    """What `record_epoch` kept: each epoch's objective values."""
    if trial.intermediate_values:
        return {step: (value,) for step, value in trial.intermediate_values.items()}
    return {
        int(key.removeprefix(EPOCH_VALUES)): tuple(value)
        for key, value in trial.user_attrs.items()
        if key.startswith(EPOCH_VALUES)
    }


def record_costs(trial: optuna.Trial, costs: dict[str, float], budgets: dict[str, float]) -> None:
    """The trial's measured costs, and with budgets (by reported metric) its constraints."""
    if not costs:
        return
    trial.set_user_attr(COSTS_ATTR, dict(costs))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is already set")  # told again after a restart
        for key, limit in budgets.items():
            if key in costs:
                trial.set_constraint(key, costs[key] / limit - 1.0)


def violates(trial: FrozenTrial) -> bool:
    """Whether the study holds this trial as infeasible (a constraint above 0)."""
    return any(value > 0 for value in trial.constraints.values())
