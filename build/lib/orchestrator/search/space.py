"""The spec's `space` compiled into the Optuna define-by-run function the searcher calls per trial."""

from __future__ import annotations

from typing import Any

import optuna

from orchestrator.spec import FloatParam, IntParam, SearchParam, SweepSpec, active, condition_order


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
