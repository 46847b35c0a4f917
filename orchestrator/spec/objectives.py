"""Checks on what a sweep optimises and within what: its objectives (one, or several) and its
deployment budgets, including a budget that no config in the space can meet, refused up front."""

from __future__ import annotations

from orchestrator.errors import did_you_mean
from orchestrator.spec.models import DEFAULT_DIGITS_TARGET, REPORTED_METRICS, ImageFolderSource, SweepSpec

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
    """Every budget some config can meet, and no baseline over one. Parameters and MACs are counted
    on the meta device for each backbone (they do not depend on the other hyperparameters);
    latency depends on the trial's device, so it is checked when a trial starts."""
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
    for i, point in enumerate(spec.search.baselines):
        backbone = point.get("backbone", spec.backbones[0] if len(spec.backbones) == 1 else None)
        if backbone in costs and backbone not in fits:
            over = next(name for name in static if costs[backbone][COSTS[name]] > budgets[name])
            fail(
                f"search.baselines[{i}].backbone",
                f"{backbone} has {costs[backbone][COSTS[over]]:,} {UNITS[over]}, over constraints.{over}.max "
                f"({budgets[over]:g}): a baseline over budget would never train",
            )


def _num_classes(spec: SweepSpec) -> tuple[int, bool]:
    """The target's class count, and whether it is exact: an image folder's classes are its folders,
    not read here, so 2 (the fewest a task has) stands in, and a cost is then a lower bound."""
    if spec.data.classes:
        return len(spec.data.classes), True
    if not isinstance(spec.data.dataset, ImageFolderSource):
        return len(DEFAULT_DIGITS_TARGET), True
    return 2, False
