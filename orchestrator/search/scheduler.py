"""Early stopping: ASHA on epochs, with the spec's baselines run to max_epochs, several objectives
compared by non-dominated sorting, and (optionally) rungs moved to the end of a frozen phase."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.schedulers.async_hyperband import _Bracket

from orchestrator.search.pareto import losses, priority_order
from orchestrator.spec import SweepSpec

TRANSITIONAL = ("gradual", "lp_ft")  # schedules that start (partly) frozen and unfreeze later


class BaselineASHA(ASHAScheduler):
    """Ray's ASHA (its rungs, brackets and cut-off) on epochs, and:

    - the spec's baselines run to max_t: they are reference points, and a reference stopped at
      epoch 2 tells the user nothing. They still count in the rungs.
    - with several objectives, a trial reaching a rung is kept if it ranks in the top
      1/reduction_factor of that rung (rounded up) by non-dominated sorting with an epsilon-net
      tie-break (`ParetoBracket`): MO-ASHA (Schmucker et al., 2021) on Ray's scheduler interface.
    - `phase_aware`: a `gradual` or `lp_ft` trial that is still partly frozen (it reports
      `frozen_groups` > 0) is not judged against fully trainable trials at the same epoch: a rung
      decision that falls due in its frozen phase waits for its first fully trainable epoch.
    """

    def __init__(
        self,
        *,
        keys: Sequence[str],
        modes: Sequence[str],
        max_t: int,
        grace_period: int,
        reduction_factor: float,
        phase_aware: bool = False,
    ):
        super().__init__(
            time_attr="epoch",
            metric=keys[0],  # Tune checks that every result holds it
            mode=modes[0],
            max_t=max_t,
            grace_period=grace_period,
            reduction_factor=reduction_factor,
        )
        self._keys, self._modes = tuple(keys), tuple(modes)
        if len(keys) > 1:
            self._brackets = [ParetoBracket(grace_period, max_t, reduction_factor, s=0)]
        self._phase_aware = phase_aware

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if self._time_attr not in result:
            return TrialScheduler.CONTINUE
        if result[self._time_attr] >= self._max_t:
            self._num_stopped += 1
            return TrialScheduler.STOP
        epoch = self._rung_epoch(trial, result)
        if epoch is None:
            return TrialScheduler.CONTINUE  # still partly frozen: its rung decision waits
        action = self._trial_info[trial.trial_id].on_result(trial, epoch, self._reward(result))
        if action == TrialScheduler.STOP and trial.config.get("baseline") is not None:
            return TrialScheduler.CONTINUE
        if action == TrialScheduler.STOP:
            self._num_stopped += 1
        return action

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        epoch = self._rung_epoch(trial, result) if self._time_attr in result else None
        if epoch is not None:
            self._trial_info[trial.trial_id].on_result(trial, epoch, self._reward(result))
        del self._trial_info[trial.trial_id]

    def _rung_epoch(self, trial, result: dict) -> int | None:
        """The epoch at which the rungs see this result, None while a decision waits."""
        epoch = int(result[self._time_attr])
        if self._phase_aware and trial.config.get("unfreeze") in TRANSITIONAL and result.get("frozen_groups", 0) > 0:
            return None
        return epoch

    def _reward(self, result: dict):
        """Higher is better for one objective (as Ray's ASHA); objectives to minimise for several."""
        if len(self._keys) == 1:
            value = result.get(self._keys[0])
            return self._metric_op * value if value is not None else math.nan
        return tuple(losses([[result.get(key) for key in self._keys]], self._modes)[0])


class ParetoBracket(_Bracket):
    """Ray's bracket (the same rungs), deciding by rank instead of a percentile: a trial reaching a
    rung continues if its place among the rung's trials, itself included, ordered by
    `priority_order`, is within the first ceil(n / reduction_factor)."""

    def cutoff(self, recorded):
        return None  # there is no single cut-off value with several objectives

    def on_result(self, trial, cur_iter: int, cur_rew) -> str:
        for milestone, recorded in self._rungs:
            if cur_iter < milestone or trial.trial_id in recorded:
                continue
            points = np.array([*recorded.values(), cur_rew], dtype=float)
            place = priority_order(points).index(len(points) - 1)
            recorded[trial.trial_id] = cur_rew
            keep = math.ceil(len(points) / self.rf)
            return TrialScheduler.CONTINUE if place < keep else TrialScheduler.STOP
        return TrialScheduler.CONTINUE


def make_scheduler(spec: SweepSpec) -> TrialScheduler:
    es = spec.early_stopping
    if es.scheduler == "none":
        return FIFOScheduler()
    return BaselineASHA(
        keys=spec.objective_keys,
        modes=spec.objective_modes,
        max_t=es.max_epochs,
        grace_period=es.grace_period,
        reduction_factor=es.reduction_factor,
        phase_aware=es.phase_aware,
    )
