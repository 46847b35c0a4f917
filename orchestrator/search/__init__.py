"""How trials are chosen and stopped: the search space, Optuna's study and searcher, and ASHA."""

from orchestrator.search.pareto import losses, nondominated_ranks, pareto_front, priority_order
from orchestrator.search.scheduler import BaselineASHA, ParetoBracket, make_scheduler
from orchestrator.search.searcher import FidelityOptunaSearch, make_sampler, make_searcher
from orchestrator.search.space import DefineByRun
from orchestrator.search.study import (
    COSTS_ATTR,
    EPOCH_VALUES,
    MLFLOW_RUN_ID,
    OPTUNA_STATE,
    RAY_TRIAL_ID,
    epoch_values,
    open_study_storage,
    record_costs,
    record_epoch,
    violates,
)

__all__ = [
    "BaselineASHA",
    "COSTS_ATTR",
    "EPOCH_VALUES",
    "ParetoBracket",
    "epoch_values",
    "losses",
    "nondominated_ranks",
    "pareto_front",
    "priority_order",
    "record_costs",
    "record_epoch",
    "violates",
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
