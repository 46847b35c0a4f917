"""What the report computes from the trials: rungs, Pareto fronts, importances and best ranges."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import optuna
from optuna.importance import FanovaImportanceEvaluator
from optuna.trial import TrialState
from ray.tune.schedulers import ASHAScheduler

from orchestrator.insights.report.model import TOP_FRACTION, Importances, ValueRange
from orchestrator.search import open_study_storage

BOOTSTRAP_RESAMPLES = 8  # enough to see whether a ranking holds; each is one more fANOVA fit
TRIALS_PER_PARAMETER = 10


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
    study_location: str | optuna.storages.BaseStorage, sweep_id: str, mode: str, conditions: dict[str, str]
) -> tuple[Importances, dict[str, ValueRange]]:
    """fANOVA importances over the COMPLETE trials (the parameters every one of them has), their
    spread over bootstrap resamples and whether to trust them; each conditional parameter's
    importance within the trials that searched it (`conditions`: parameter -> its `when`, as text).
    Or why there are none."""
    try:
        storage = open_study_storage(study_location) if isinstance(study_location, str) else study_location
        study = optuna.load_study(study_name=sweep_id, storage=storage)
    except KeyError:
        return Importances(note=f"the Optuna study {sweep_id!r} was not found"), {}
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    direction = study.directions[0]
    if len(study.directions) > 1:  # importances for the first objective: each trial as if it had only that one
        complete = [_first_objective(t) for t in complete]
    values, problem = _fanova(complete, direction, seed=0)
    if problem:
        return Importances(trials=len(complete), note=problem), {}
    spread = _bootstrap_spread(complete, direction, list(values))
    within = {}
    for name, condition in conditions.items():
        subset = [t for t in complete if name in t.params]
        found, _ = _fanova(subset, direction, seed=0)
        if name in found:
            within[name] = (condition, found[name], len(subset))
    return (
        Importances(
            values=values,
            spread=spread,
            trials=len(complete),
            caveat=_caveat(values, spread, len(complete)),
            within=within,
        ),
        best_ranges(complete, list(values), mode),
    )


def _first_objective(trial: optuna.trial.FrozenTrial) -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(
        params=trial.params, distributions=trial.distributions, value=trial.values[0], state=TrialState.COMPLETE
    )


def _fanova(trials: list, direction, *, seed: int, trees: int = 64) -> tuple[dict[str, float], str]:
    """fANOVA over these trials' common parameters (Optuna's evaluator on an in-memory copy)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # each resample is a study of its own
    if len(trials) < 2:
        return {}, f"importances need at least 2 completed trials; this sweep has {len(trials)}"
    if len({t.value for t in trials}) < 2:
        return {}, f"all {len(trials)} completed trials scored the same, so no parameter explains anything"
    study = optuna.create_study(direction=direction)
    study.add_trials(trials)
    try:
        found = optuna.importance.get_param_importances(
            study, evaluator=FanovaImportanceEvaluator(n_trees=trees, seed=seed)
        )
    except (ValueError, RuntimeError) as exc:
        return {}, f"fANOVA could not run: {exc}"
    found = {k: float(v) for k, v in found.items() if math.isfinite(v)}
    return (found, "") if found else ({}, "no parameter took more than one value in every completed trial")


def _bootstrap_spread(trials: list, direction, names: list[str]) -> dict[str, float]:
    """Standard deviation of each importance over resamples of the trials (with replacement)."""
    rng = np.random.default_rng(0)
    draws: dict[str, list[float]] = {name: [] for name in names}
    for seed in range(BOOTSTRAP_RESAMPLES):
        sample = [trials[i] for i in rng.integers(0, len(trials), len(trials))]
        found, _ = _fanova(sample, direction, seed=seed, trees=16)
        for name in names:
            draws[name].append(found.get(name, 0.0))
    return {name: float(np.std(values)) for name, values in draws.items()}


def _caveat(values: dict[str, float], spread: dict[str, float], trials: int) -> str:
    """Why the ranking is not yet advice: too few trials for the parameters (fANOVA fits a random
    forest over them; like any regression it needs about ten points per dimension), or a ranking
    that its own resamples do not reproduce (the top two within one standard deviation)."""
    needed = TRIALS_PER_PARAMETER * len(values)
    reasons = []
    if trials < needed:
        reasons.append(f"{trials} completed trials for {len(values)} parameters (about {needed} are needed)")
    ranked = list(values)
    if len(ranked) > 1 and values[ranked[0]] - values[ranked[1]] < spread[ranked[0]] + spread[ranked[1]]:
        reasons.append(f"{ranked[0]} and {ranked[1]} swap places across resamples of the trials")
    return "; ".join(reasons)
