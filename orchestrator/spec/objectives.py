"""Checks on what a sweep optimises and within what: its objectives (one, or several) and its
deployment budgets, including a budget that no config in the space can meet, refused up front."""

from __future__ import annotations

from orchestrator.errors import did_you_mean
from orchestrator.spec.models import (
    DEFAULT_DIGITS_TARGET,
    REPORTED_METRICS,
    CategoricalParam,
    ImageFolderSource,
    SweepSpec,
)

# A cost in words, for messages: `has 373,173 parameters`.
UNITS = {"params": "parameters", "macs": "MACs per image", "latency_ms": "ms per image"}


def check_objectives(spec: SweepSpec, fail) -> None:
    from trainables.budgets import COSTS

    several = isinstance(spec.objective, list)
    known = (*REPORTED_METRICS, *COSTS) if several else REPORTED_METRICS
    seen: set[str] = set()
    for i, objective in enumerate(spec.objectives):
        field = f"objective[{i}]" if several else "objective"
        name = objective.metric
        if name in COSTS and not several:
            fail(
                f"{field}.metric",
                f"{name!r} is a cost, known before training; make it one of several objectives beside a trained "
                f"metric (objective: [{{metric: val_acc, mode: max}}, {{metric: {name}, mode: min}}]) or a budget "
                f"(constraints: {{{name}: {{max: ...}}}})",
            )
        if name not in known:
            fail(
                f"{field}.metric",
                f"{name!r} is not reported by trials; expected one of {list(known)}{did_you_mean(name, known)}",
            )
        if name in COSTS and objective.mode != "min":
            fail(f"{field}.mode", f"{name} is a cost, so it is minimised: mode must be 'min'")
        if name in seen:
            fail(f"{field}.metric", f"{name!r} is already an objective; each metric may appear once")
        seen.add(name)
    if several and not seen & set(REPORTED_METRICS):
        fail("objective", f"costs alone need no training: add a trained metric, one of {list(REPORTED_METRICS)}")


def check_constraints(spec: SweepSpec, fail) -> None:
    """Every budget some config can meet. Parameters and MACs are counted on the meta device for each
    backbone (they do not depend on the other hyperparameters); latency depends on the trial's
    device, so it is checked when a trial starts. A baseline over budget is no error: it is a
    reference point that turns out not to fit, and is recorded infeasible like any config."""
    from trainables.budgets import COSTS, static_costs

    budgets = spec.budgets
    if not budgets:
        fail("constraints", f"sets no budget; give at least one of {list(COSTS)}, or remove it")
    static = [name for name in ("params", "macs") if name in budgets]
    if not static:
        return
    classes, exact = _num_classes(spec)
    costs = {}
    for backbone in spec.backbones:
        try:
            costs[backbone] = static_costs(backbone, classes, spec.data.image_size)
        except Exception as exc:  # noqa: BLE001 - a model that cannot run on its input cannot be costed either
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            fail("space.backbone", f"{backbone} cannot be costed for constraints: {reason}")
    at_least = "" if exact else "at least "  # an image folder's classes are counted when its data is read
    for name in static:
        key, limit = COSTS[name], budgets[name]
        cheapest = min(costs, key=lambda b: costs[b][key])
        if costs[cheapest][key] > limit:
            fail(
                f"constraints.{name}.max",
                f"no config can meet {name} <= {limit:g}: the cheapest backbone in the space, {cheapest}, has "
                f"{at_least}{costs[cheapest][key]:,} {UNITS[name]}",
            )
    fits = [b for b in costs if all(costs[b][COSTS[name]] <= budgets[name] for name in static)]
    if not fits:
        within = "; ".join(
            f"{name} only {', '.join(b for b in costs if costs[b][COSTS[name]] <= budgets[name])}" for name in static
        )
        fail("constraints", f"no backbone meets every budget at once (within {within})")


def within_static_budgets(spec: SweepSpec, num_classes: int) -> SweepSpec:
    """The spec with `space.backbone` cut to the backbones whose parameters and MACs fit every budget,
    for what is prepared per backbone before trials run (pretraining, prescreening): a backbone over
    budget never trains, so nothing is spent on it. The sweep's own space stays as written."""
    from trainables.budgets import COSTS, static_costs

    static = {name: limit for name, limit in spec.budgets.items() if name in ("params", "macs")}
    backbone = spec.space.get("backbone")
    if not static or not isinstance(backbone, CategoricalParam):
        return spec
    fits = [
        choice
        for choice in backbone.choices
        if all(static_costs(choice, num_classes, spec.data.image_size)[COSTS[n]] <= v for n, v in static.items())
    ]
    return spec.model_copy(update={"space": {**spec.space, "backbone": backbone.model_copy(update={"choices": fits})}})


def _num_classes(spec: SweepSpec) -> tuple[int, bool]:
    """The target's class count, and whether it is exact: an image folder's classes are its folders,
    not read here, so 2 (the fewest a task has) stands in, and a cost is then a lower bound."""
    if spec.data.classes:
        return len(spec.data.classes), True
    if not isinstance(spec.data.dataset, ImageFolderSource):
        return len(DEFAULT_DIGITS_TARGET), True
    return 2, False
