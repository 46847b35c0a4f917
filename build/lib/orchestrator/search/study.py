"""The Optuna study of a sweep: where it is stored, and how its trials name the other stores."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

from orchestrator.outcomes import COMPLETED, DIVERGED, ERRORED, PRUNED

RAY_TRIAL_ID, MLFLOW_RUN_ID = "ray.trial_id", "mlflow.run_id"  # user attributes of each Optuna trial


OPTUNA_STATE = {
    COMPLETED: TrialState.COMPLETE,
    PRUNED: TrialState.PRUNED,
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
