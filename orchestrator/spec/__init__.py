"""What a sweep is asked to do: the spec file, parsed, validated and checked before anything runs."""

from orchestrator.spec.conditions import active, condition_order, contains
from orchestrator.spec.loading import load_spec
from orchestrator.spec.models import (
    DEFAULT_DIGITS_SOURCE,
    DEFAULT_DIGITS_TARGET,
    REPORTED_METRICS,
    RESERVED_STORAGE_NAMES,
    CategoricalParam,
    DataSpec,
    FloatParam,
    ImageFolderSource,
    IntParam,
    PretrainSpec,
    SearchParam,
    SweepSpec,
)
from orchestrator.spec.objectives import within_static_budgets
from orchestrator.spec.reading import spec_text_for_logging

__all__ = [
    "CategoricalParam",
    "DEFAULT_DIGITS_SOURCE",
    "DEFAULT_DIGITS_TARGET",
    "DataSpec",
    "FloatParam",
    "ImageFolderSource",
    "IntParam",
    "PretrainSpec",
    "REPORTED_METRICS",
    "RESERVED_STORAGE_NAMES",
    "SearchParam",
    "SweepSpec",
    "active",
    "condition_order",
    "contains",
    "load_spec",
    "spec_text_for_logging",
    "within_static_budgets",
]
