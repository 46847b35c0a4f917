"""What the report computes from the trials: rungs, Pareto fronts, importances and best ranges."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import optuna
from optuna.importance import FanovaImportanceEvaluator
from optuna.trial import TrialState
from ray.tune.schedulers import ASHAScheduler

from orchestrator.insights.report.model import TOP_FRACTION, ValueRange
from orchestrator.search import open_study_storage


def asha_rungs(grace_period: int, reduction_factor: float, max_epochs: int) -> list[int]:
    """Epochs before max_epochs at which ASHA may stop a trial, as Ray's own scheduler places them (its
    bracket keeps them in a private field; deriving them again differs at exact powers: 243 with factor 3)."""
    scheduler = ASHAScheduler(
        time_attr="epoch", max_t=max_epochs, grace_period=grace_period, reduction_factor=reduction_factor, brackets=1
    )
    return sorted(int(milestone) for milestone, _ in scheduler._brackets[0]._rungs if milestone < max_epochs)


def pareto_front(costs: list[float], values: list[float]) -> list[int]:
    """Indices of the points no other point beats: lower cost and higher value, one strictly."""
    c, v = np.asarray(costs, dtype=float), np.asarray(values, dtype=float)
    front = []
    for i in range(len(c)):
        dominated = (c <= c[i]) & (v >= v[i]) & ((c < c[i]) | (v > v[i]))
        if not dominated.any():
            front.append(i)
    return front


def best_ranges(trials: list[optuna.trial.FrozenTrial], params: list[str], mode: str) -> dict[str, ValueRange]:
    """For each parameter, the range its values span in the top quartile (at least 2) of the
    completed trials, by the value Optuna was told."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.values and math.isfinite(t.values[0])]
    done.sort(key=lambda t: t.values[0], reverse=mode == "max")  # the first objective, with several
    top = done[: max(2, math.ceil(len(done) * TOP_FRACTION))]
    ranges = {}
    for name in params:
        seen = [t.params[name] for t in top if name in t.params]
        if not seen:
            continue
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in seen):
            ranges[name] = ValueRange(low=min(seen), high=max(seen))
        else:  # categorical: the values the top trials chose, most frequent first
            ranges[name] = ValueRange(values=tuple(v for v, _ in Counter(map(str, seen)).most_common()))
    return ranges


def study_importances(
    optuna_url: str | optuna.storages.BaseStorage, sweep_id: str, mode: str
) -> tuple[dict[str, float], str, dict[str, ValueRange]]:
    """fANOVA importances over the COMPLETE trials, or why there are none."""
    try:
        storage = open_study_storage(optuna_url) if isinstance(optuna_url, str) else optuna_url
        study = optuna.load_study(study_name=sweep_id, storage=storage)
    except KeyError:
        return {}, f"the Optuna study {sweep_id!r} was not found", {}
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        return {}, f"importances need at least 2 completed trials; this sweep has {len(complete)}", {}
    if len({t.values[0] for t in complete}) < 2:
        return {}, f"all {len(complete)} completed trials scored the same, so no parameter explains anything", {}
    several = len(study.directions) > 1
    try:
        importances = optuna.importance.get_param_importances(
            study, evaluator=FanovaImportanceEvaluator(seed=0), target=(lambda t: t.values[0]) if several else None
        )
    except (ValueError, RuntimeError) as exc:
        return {}, f"fANOVA could not run: {exc}", {}
    importances = {k: float(v) for k, v in importances.items() if math.isfinite(v)}
    if not importances:
        return {}, "no parameter took more than one value in every completed trial", {}
    note = f"fANOVA over {len(complete)} completed trials (trials stopped early are not used)"
    if several:
        note += ", for the first objective"
    return importances, note, best_ranges(complete, list(importances), mode)
