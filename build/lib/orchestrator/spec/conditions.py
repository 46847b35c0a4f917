"""Compiles a spec's `space` into an Optuna define-by-run function (with `when:` conditions)."""

from __future__ import annotations

from typing import Any

from orchestrator.spec.models import CategoricalParam, FloatParam, IntParam, SearchParam, SweepSpec


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
