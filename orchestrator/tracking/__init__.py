"""MLflow: the sweep's parent and child runs, live logging, credentials, and the model registry."""

from orchestrator.tracking.credentials import (
    credentials_file_problem,
    credentials_for,
    may_send_credentials,
    origin,
    withhold_credentials,
)
from orchestrator.tracking.live import MLflowLiveLogger
from orchestrator.tracking.registry import Registered, register_best
from orchestrator.tracking.runs import SweepRuns
from orchestrator.tracking.schema import (
    INTERRUPTED,
    NODE_ID,
    OPTUNA_TRIAL,
    OUTCOME,
    PARENT,
    PARETO,
    PARETO_TRIALS,
    RAY_KEYS,
    ROLE,
    SWEEP_ID,
    TRIAL_ID,
    metrics_of,
    run_status,
)
from orchestrator.tracking.store import check_reachable, child_runs, default_tracking_uri, experiment_id, parent_runs

__all__ = [
    "INTERRUPTED",
    "MLflowLiveLogger",
    "NODE_ID",
    "OPTUNA_TRIAL",
    "OUTCOME",
    "PARENT",
    "PARETO",
    "PARETO_TRIALS",
    "RAY_KEYS",
    "ROLE",
    "Registered",
    "SWEEP_ID",
    "SweepRuns",
    "TRIAL_ID",
    "check_reachable",
    "child_runs",
    "credentials_file_problem",
    "credentials_for",
    "default_tracking_uri",
    "experiment_id",
    "may_send_credentials",
    "metrics_of",
    "origin",
    "parent_runs",
    "register_best",
    "run_status",
    "withhold_credentials",
]
