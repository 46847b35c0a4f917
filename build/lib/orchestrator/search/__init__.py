"""How trials are chosen and stopped: the search space, Optuna's study and searcher, and ASHA."""

from orchestrator.search.scheduler import BaselineASHA, make_scheduler
from orchestrator.search.searcher import FidelityOptunaSearch, make_sampler, make_searcher
from orchestrator.search.space import DefineByRun
from orchestrator.search.study import MLFLOW_RUN_ID, OPTUNA_STATE, RAY_TRIAL_ID, open_study_storage

__all__ = [
    "BaselineASHA",
    "DefineByRun",
    "FidelityOptunaSearch",
    "MLFLOW_RUN_ID",
    "OPTUNA_STATE",
    "RAY_TRIAL_ID",
    "make_sampler",
    "make_scheduler",
    "make_searcher",
    "open_study_storage",
]
