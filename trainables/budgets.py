"""Deployment budgets: what a config costs before it trains, and what an over-budget trial reports.

Parameters and MACs follow from the config alone (backbone, classes, input size), so they are
counted on the meta device, where building and running a model allocates and computes nothing.
Latency depends on the trial's device and is measured there (`measure.latency_ms_per_image`).
A budget is the config key `max_<cost>`; a trial over one reports `infeasible_result` once,
before its first epoch, and stops.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from trainables.loop import EVAL_METRICS
from trainables.measure import multiply_accumulates
from trainables.models import create_backbone
from trainables.transforms import data_config

# A cost's name in the spec -> the metric every trial reports it as.
COSTS = {"params": "total_params", "macs": "macs", "latency_ms": "latency_ms"}


def budget_key(cost: str) -> str:
    """The trial-config key of a cost's budget (`max_params`, ...)."""
    return f"max_{cost}"


@lru_cache(maxsize=64)
def static_costs(backbone: str, num_classes: int, image_size: int | None) -> dict[str, int]:
    """Parameters and MACs per image of a config's model, counted on the meta device."""
    with torch.device("meta"):
        model = create_backbone(backbone, num_classes)
    size = data_config(model, image_size)["input_size"]
    return {
        COSTS["params"]: sum(p.numel() for p in model.parameters()),
        COSTS["macs"]: multiply_accumulates(model, size, torch.device("meta")),
    }


def over_budget(costs: dict[str, float], config: dict) -> dict[str, float]:
    """The costs (by reported metric) that exceed the config's budgets, with their values."""
    over = {}
    for cost, metric in COSTS.items():
        limit, value = config.get(budget_key(cost)), costs.get(metric)
        if limit is not None and value is not None and value > limit:
            over[metric] = value
    return over


def infeasible_result(costs: dict[str, float]) -> dict[str, float]:
    """The one result of a trial over budget: its costs, at epoch 0 (before any training). Every
    metric an objective may name is present (NaN when not measured), since Tune requires the
    objectives in every result."""
    nan = math.nan
    return {
        "epoch": 0,
        "infeasible": 1,
        "train_loss": nan,
        **{f"val_{name}": nan for name in EVAL_METRICS},
        **dict.fromkeys(COSTS.values(), nan),
        **costs,
    }
