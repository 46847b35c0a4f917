"""Early stopping: ASHA on epochs, which lets the spec's baselines run to max_epochs."""

from __future__ import annotations

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from orchestrator.spec import SweepSpec


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
    scheduler = BaselineASHA(
        time_attr="epoch", max_t=es.max_epochs, grace_period=es.grace_period, reduction_factor=es.reduction_factor
    )
    scheduler.set_search_properties(spec.objective.metric, spec.objective.mode)
    return scheduler
