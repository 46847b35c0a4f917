"""The Pareto front of a sweep with several objectives: its trials tagged in MLflow, listed on the
parent run, and each registered as a version of the model (the best by the first objective is the
`champion`; `register_trial` says how the others are tagged)."""

from __future__ import annotations

from orchestrator.run.recording import RecordedTrial, pareto_trials
from orchestrator.run.registration import register_trial, trial_backbone
from orchestrator.run.session import Sweep
from trainables.data import TaskData


def record_front(
    sweep: Sweep, trials: list[RecordedTrial], best: RecordedTrial | None, target: TaskData | None
) -> list[str]:
    """Tag and register the front; returns its trial ids, in the order they ended."""
    spec, runs = sweep.spec, sweep.runs
    front = pareto_trials(trials, spec.objective_modes)
    runs.mark_front([t.trial_id for t in front], [t.trial_id for t in trials])
    if target is not None and spec.mlflow.register_best_as:
        for trial in front:
            if best is None or trial.trial_id != best.trial_id:  # the champion is registered with the best
                register_trial(sweep, trial, trial_backbone(sweep, trial, target), target, champion=False)
    return [t.trial_id for t in front]
