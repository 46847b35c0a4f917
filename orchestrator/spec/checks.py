"""Checks on a parsed spec that need more than its types: ranges, names, conditions, baselines.

Each failure is a `SpecError` naming the field, so the user fixes it before compute is spent.
"""

from __future__ import annotations

import importlib.metadata
import math
from functools import lru_cache
from typing import Any

from optuna.distributions import FloatDistribution, IntDistribution

from orchestrator.errors import SpecError, did_you_mean
from orchestrator.spec.locations import check_local_dir, check_locations, check_weights_file, local_path
from orchestrator.spec.models import (
    DIGITS_CLASSES,
    RESERVED_STORAGE_NAMES,
    CategoricalParam,
    FloatParam,
    ImageFolderSource,
    IntParam,
    SweepSpec,
)
from orchestrator.spec.objectives import check_constraints, check_objectives
from trainables.hyperparams import HYPERPARAMETERS
from trainables.paths import cache_dir, write_atomically
from trainables.weight_files import KINDS, WeightsError, parse_source

DIGITS_MIN_PER_CLASS = 174  # the rarest digit in scikit-learn's set
MAX_ASHA_RUNGS = 64  # the spec's limits allow about 24; a guard should those limits ever move
RAY_RESOURCE_UNIT = 1e-4  # Ray keeps resources to 4 decimals: a smaller fraction is 0 to it, and refused


@lru_cache(maxsize=1)
def timm_models() -> frozenset[str]:
    """timm's model names. Importing timm loads torch (seconds), so the list is cached per timm
    version in the user's cache: a spec is checked in well under a second after the first time."""
    cache = cache_dir() / f"timm-{importlib.metadata.version('timm')}-models.txt"
    try:
        names = frozenset(cache.read_text().split())
        if names:
            return names
    except OSError:
        pass
    import timm  # only when the cache is missing

    names = frozenset(timm.list_models())
    write_atomically(cache, "\n".join(sorted(names)))
    return names


def check_spec(spec: SweepSpec, source: str, *, local_files: bool = True) -> None:
    def fail(field: str, problem: str) -> None:
        raise SpecError(source, field, problem)

    if spec.experiment.lower() in RESERVED_STORAGE_NAMES:
        fail(
            "experiment",
            f"{spec.experiment!r} is reserved: <storage>/{spec.experiment.lower()}/ holds what every experiment "
            "shares (the pretrained-weight cache); choose another name",
        )
    check_objectives(spec, fail)
    _check_data(spec, fail, local_files)
    _check_space(spec, fail)
    _check_conditions(spec, fail)
    _check_baselines(spec, fail)
    if spec.constraints is not None:
        check_constraints(spec, fail)  # after the space: it builds each backbone on the meta device
    _check_early_stopping(spec, fail)
    _check_resources(spec, fail)
    if spec.search.algorithm == "grid":
        _check_grid(spec, fail)
    if spec.search.prescreen is not None:
        _check_prescreen(spec, fail)
    check_locations(spec, fail)


def _check_early_stopping(spec: SweepSpec, fail) -> None:
    es = spec.early_stopping
    if es.grace_period > es.max_epochs:
        fail("early_stopping.grace_period", f"must be <= max_epochs ({es.max_epochs}), got {es.grace_period}")
    if es.scheduler == "asha":
        # Ray's ASHA builds this many rungs up front, a list per rung.
        rungs = int(math.log(es.max_epochs / es.grace_period) / math.log(es.reduction_factor) + 1)
        if rungs > MAX_ASHA_RUNGS:
            fail(
                "early_stopping.reduction_factor",
                f"{es.reduction_factor} makes {rungs} ASHA rungs between grace_period and max_epochs; "
                f"at most {MAX_ASHA_RUNGS} are allowed",
            )


def _check_resources(spec: SweepSpec, fail) -> None:
    for name in ("cpu", "gpu"):
        amount = getattr(spec.resources, name)
        if 0 < amount < RAY_RESOURCE_UNIT:
            fail(f"resources.{name}", f"must be 0 or at least {RAY_RESOURCE_UNIT} (Ray's precision), got {amount}")
    gpu = spec.resources.gpu
    if gpu > 1 and not float(gpu).is_integer():
        fail("resources.gpu", f"a trial takes a fraction of one GPU or whole GPUs, got {gpu}")


def _check_data(spec: SweepSpec, fail, local_files: bool) -> None:
    sections = [("data", spec.data)] + ([("weights.pretrain", spec.weights.pretrain)] if spec.weights.pretrain else [])
    for field, data in sections:
        classes = data.classes or []
        if len(set(map(str, classes))) != len(classes):
            fail(f"{field}.classes", f"classes must be distinct, got {classes}")
        if isinstance(data.dataset, ImageFolderSource):
            where = f"{field}.dataset.imagefolder"
            if local_files:
                check_local_dir(where, data.dataset.imagefolder, fail)
            else:
                local_path(where, data.dataset.imagefolder, fail)  # a path no OS could take is wrong anywhere
        else:
            bad = [c for c in classes if c not in DIGITS_CLASSES]
            if bad:
                fail(f"{field}.classes", f"digits has classes 0-9, got {bad[0]!r}")
    if not isinstance(spec.data.dataset, ImageFolderSource):
        per_class = spec.data.train_per_class
        if per_class is None or per_class + 1 > DIGITS_MIN_PER_CLASS:
            fail(
                "data.train_per_class",
                f"digits has {DIGITS_MIN_PER_CLASS} images in its rarest class and at least "
                f"one per class must stay for validation, got {per_class}",
            )
    elif spec.data.val_per_class is not None:
        fail(
            "data.val_per_class",
            "only applies to digits; an image folder's val split is its val/ folder or val_fraction",
        )
    _check_weights(spec, fail, local_files)


def _check_weights(spec: SweepSpec, fail, local_files: bool) -> None:
    source = spec.weights.source
    try:
        kind, path = parse_source(source)
    except WeightsError as exc:
        fail("weights.source", f"{exc}{did_you_mean(source, KINDS)}")
    if source == "pretrain" and spec.weights.pretrain is None:
        fail("weights.pretrain", "required when weights.source is 'pretrain' (which source task to pretrain on)")
    if source != "pretrain" and spec.weights.pretrain is not None:
        fail("weights.pretrain", f"given but weights.source is {source!r}, so it would be ignored; remove it")
    if kind == "file":
        check_weights_file("weights.source", path, fail, local_files=local_files)
        if len(spec.backbones) != 1:
            fail("weights.source", "a weights file fits one architecture; fix `backbone` in space to a single name")


def _check_space(spec: SweepSpec, fail) -> None:
    for name, param in spec.space.items():
        field = f"space.{name}"
        if name not in HYPERPARAMETERS:
            fail(
                field,
                f"unknown hyperparameter{did_you_mean(name, HYPERPARAMETERS)}; known: {', '.join(HYPERPARAMETERS)}",
            )
        hp = HYPERPARAMETERS[name]
        if isinstance(param, FloatParam | IntParam):
            _check_range(param, field, fail)
            if hp.kind is str:
                fail(f"{field}.type", f"{name} takes names, so use `type: categorical` with `choices`")
            if hp.kind is bool:
                fail(f"{field}.type", f"{name} is true or false, so use `type: categorical`, `choices: [true, false]`")
            if hp.kind is int and isinstance(param, FloatParam):
                fail(f"{field}.type", f"{name} is an integer, so use `type: int`")
            for end in ("low", "high"):
                problem = hp.check(getattr(param, end))
                if problem:
                    fail(f"{field}.{end}", problem)
                _check_value(name, getattr(param, end), f"{field}.{end}", fail)
        elif isinstance(param, CategoricalParam):
            if len(set(map(repr, param.choices))) != len(param.choices):
                fail(f"{field}.choices", f"choices must be distinct, got {param.choices}")
            for i, choice in enumerate(param.choices):
                _check_value(name, choice, f"{field}.choices[{i}]", fail)
        else:
            _check_value(name, param, field, fail)


def _check_range(param: FloatParam | IntParam, field: str, fail) -> None:
    """Optuna's own distributions judge a range (low <= high, low > 0 on a log scale, a positive step,
    no step with log): the spec names the field Optuna's message is about."""
    if not all(math.isfinite(v) for v in (param.low, param.high)):
        fail(field, f"low and high must be finite, got low={param.low}, high={param.high}")
    distribution = FloatDistribution if isinstance(param, FloatParam) else IntDistribution
    try:
        distribution(param.low, param.high, log=param.log, step=param.step)
    except ValueError as exc:
        problem = str(exc).replace("`", "").rstrip(".")
        fail(f"{field}.{'step' if 'step' in problem else 'low'}", f"{problem[:1].lower()}{problem[1:]} (Optuna)")


def _check_value(name: str, value: Any, field: str, fail) -> None:
    if name == "transfer_layers" and isinstance(value, float) and value > 1:
        fail(field, f"a float is a fraction of the layer groups, so it must be <= 1 (an int is a count), got {value}")
    if name == "backbone":
        if not isinstance(value, str) or value not in timm_models():
            fail(field, f"unknown timm backbone {value!r}{did_you_mean(str(value), timm_models())}")
        return
    problem = HYPERPARAMETERS[name].check(value)
    if problem:
        fail(field, problem)


def _allowed(param: Any) -> list[Any]:
    return list(param.choices) if isinstance(param, CategoricalParam) else [param]


def _check_conditions(spec: SweepSpec, fail) -> None:
    for name, param in spec.searched.items():
        for parent, values in (param.when or {}).items():
            field = f"space.{name}.when.{parent}"
            if parent not in spec.space:
                fail(field, f"names no parameter in space{did_you_mean(parent, spec.space)}")
            if parent == name:
                fail(field, "a parameter cannot be conditional on itself")
            if isinstance(spec.space[parent], FloatParam | IntParam):
                fail(field, f"conditions must name a categorical or fixed parameter; {parent} is a range")
            allowed = _allowed(spec.space[parent])
            if values == []:
                fail(field, f"lists no value of {parent}, so {name} would never be searched")
            for value in values if isinstance(values, list) else [values]:
                if value not in allowed:
                    fail(
                        field,
                        f"{value!r} is not a value {parent} can take{did_you_mean(str(value), map(str, allowed))}; "
                        f"expected one of {allowed}",
                    )
    from orchestrator.spec.conditions import condition_order

    try:
        condition_order(spec)
    except ValueError as exc:
        fail("space", str(exc))


def _check_baselines(spec: SweepSpec, fail) -> None:
    from orchestrator.spec.conditions import active, contains

    baselines, trials = spec.search.baselines, spec.search.trials
    if len(baselines) > trials:
        fail(
            "search.baselines",
            f"{len(baselines)} baselines but {trials} trials; baselines are the first trials, so some would never run",
        )
    for i, point in enumerate(baselines):
        for name, value in point.items():
            field = f"search.baselines[{i}].{name}"
            if name not in spec.space:
                fail(field, f"names no parameter in space{did_you_mean(name, spec.space)}")
            if name in spec.fixed:
                fail(field, f"{name} is fixed in space to {spec.fixed[name]!r}; baselines set searched parameters only")
            if not contains(spec.space[name], value):
                fail(field, f"{value!r} lies outside the space of {name}")
            if not active(spec.space[name], {**spec.fixed, **point}):
                fail(field, f"{name} is only searched when {spec.space[name].when}, which this baseline does not meet")


def _check_prescreen(spec: SweepSpec, fail) -> None:
    """Prescreening keeps the `keep_top` best backbones by LogME, plus every backbone a baseline
    names (baselines always run), so it must have choices to prune and pretrained features to rank."""
    field, k = "search.prescreen.keep_top", spec.search.prescreen.keep_top
    backbone = spec.space.get("backbone")
    if not isinstance(backbone, CategoricalParam):
        fail(field, "prescreen prunes the backbone choices, so space.backbone must be `type: categorical`")
    if len(backbone.choices) <= k:
        fail(field, f"keeps the top {k} backbones, but space.backbone has only {len(backbone.choices)} choices")
    if spec.weights.source == "none":
        fail("search.prescreen", "ranks pretrained features, but weights.source is 'none' (nothing to rank)")
    in_baselines = {point["backbone"] for point in spec.search.baselines if "backbone" in point}
    if in_baselines >= set(backbone.choices):
        fail(field, "the baselines name every backbone choice, and baseline backbones are always kept")
    if spec.search.algorithm == "grid":
        # the fewest backbone choices that can remain, times every other searched parameter's
        others = math.prod(len(param.choices) for name, param in spec.searched.items() if name != "backbone")
        size = max(k, len(in_baselines)) * others
        if spec.search.trials > size:
            fail(
                "search.trials",
                f"after prescreen the grid may have only {size} points, so trials must be <= {size}, "
                f"got {spec.search.trials}",
            )


def _check_grid(spec: SweepSpec, fail) -> None:
    size = 1
    for name, param in spec.searched.items():
        if not isinstance(param, CategoricalParam):
            fail(f"space.{name}.type", "grid search needs every searched parameter categorical")
        if param.when:
            fail(f"space.{name}.when", "grid search does not support conditional parameters")
        size *= len(param.choices)
    if spec.search.trials > size:
        fail("search.trials", f"the grid has {size} points, so trials must be <= {size}, got {spec.search.trials}")
