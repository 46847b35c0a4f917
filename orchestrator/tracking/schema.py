"""What the sweep's MLflow runs are tagged with, and which result keys are metrics."""

from __future__ import annotations

import numbers

from mlflow.entities import Metric

from orchestrator.outcomes import COMPLETED, INFEASIBLE, PRUNED, finite

ROLE, SWEEP_ID, TRIAL_ID, OUTCOME = "orchestrator.role", "orchestrator.sweep_id", "ray.trial_id", "outcome"


OPTUNA_TRIAL = "optuna.trial_number"


PARENT = "mlflow.parentRunId"


NODE_ID = "ray.node_id"


# Several objectives: each child run says whether it is on the sweep's Pareto front, and the parent
# lists the front's trials.
PARETO, PARETO_TRIALS = "pareto", "pareto.trial_ids"


INTERRUPTED = "interrupted"  # outcome tag of a trial stopped with its sweep (it resumes with it)


# Keys Ray adds to every result; they are bookkeeping, not trial metrics.
RAY_KEYS = {
    "done",
    "training_iteration",
    "trial_id",
    "date",
    "timestamp",
    "time_this_iter_s",
    "time_total_s",
    "pid",
    "hostname",
    "node_ip",
    "time_since_restore",
    "iterations_since_restore",
    "checkpoint_dir_name",
    "should_checkpoint",
    "epoch",
    "diverged",
    "infeasible",
}


def metrics_of(result: dict, step: int, timestamp_ms: int) -> list[Metric]:
    return [
        Metric(key, float(value), timestamp_ms, step)
        for key, value in result.items()
        if key not in RAY_KEYS
        and isinstance(value, numbers.Real)  # numpy's too: records read back by pandas hold them
        and not isinstance(value, bool)
        and finite(float(value))
    ]


def run_status(outcome: str) -> str:
    """FINISHED for a trial the sweep's rules ended (it reached max_epochs, ASHA stopped it, or it was
    over budget); FAILED for one that broke; KILLED for one stopped with its sweep."""
    if outcome in (COMPLETED, PRUNED, INFEASIBLE):
        return "FINISHED"
    return "KILLED" if outcome == INTERRUPTED else "FAILED"
