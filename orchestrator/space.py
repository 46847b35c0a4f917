"""Compiles a spec's `space` into an Optuna define-by-run function (with `when:` conditions)."""

from __future__ import annotations

from typing import Any

import optuna

from orchestrator.spec import CategoricalParam, FloatParam, IntParam, SearchParam, SweepSpec


def condition_order(spec: SweepSpec) -> list[str]:
    """Searched parameters ordered so every `when:` parent is suggested before its children."""
    searched = spec.searched
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order or name not in searched:
            return
        if name in visiting:
            raise ValueError(f"the `when:` conditions of {name!r} form a cycle")
        visiting.add(name)
        for parent in searched[name].when or {}:
            visit(parent)
        visiting.discard(name)
        order.append(name)

    for name in searched:
        visit(name)
    return order


def active(param: SearchParam, values: dict[str, Any]) -> bool:
    """Whether a conditional parameter is searched, given the values chosen so far."""
    for parent, allowed in (param.when or {}).items():
        allowed = allowed if isinstance(allowed, list) else [allowed]
        if parent not in values or values[parent] not in allowed:
            return False
    return True


def contains(param: Any, value: Any) -> bool:
    if isinstance(param, CategoricalParam):
        return value in param.choices
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(param, IntParam):
        return isinstance(value, int) and param.low <= value <= param.high and (value - param.low) % param.step == 0
    if isinstance(param, FloatParam):
        return param.low <= value <= param.high
    return value == param


def suggest(trial: optuna.Trial, name: str, param: SearchParam) -> Any:
    if isinstance(param, FloatParam):
        return trial.suggest_float(name, param.low, param.high, step=param.step, log=param.log)
    if isinstance(param, IntParam):
        return trial.suggest_int(name, param.low, param.high, step=param.step, log=param.log)
    return trial.suggest_categorical(name, param.choices)


class DefineByRun:
    """The function OptunaSearch calls per trial (a class, so Ray can pickle it with the searcher).

    Suggested values are captured by Ray; the returned dict adds the fixed values, the
    per-run keys and, for the spec's `baselines`, `baseline: <index>` to the trial config.
    """

    def __init__(self, spec: SweepSpec, run_keys: dict[str, Any]):
        self.order = condition_order(spec)
        self.searched = spec.searched
        self.fixed = {**spec.fixed, **run_keys}
        self.baselines = [dict(point) for point in spec.search.baselines]

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        values = dict(self.fixed)
        for name in self.order:
            if active(self.searched[name], values):
                values[name] = suggest(trial, name, self.searched[name])
        # Baselines are enqueued, so they are the study's first trials, with exactly their values.
        index = trial.number
        if index < len(self.baselines) and all(values.get(k) == v for k, v in self.baselines[index].items()):
            return {**self.fixed, "baseline": index}
        return self.fixed
