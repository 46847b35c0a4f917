"""A trial's optimizer and learning-rate schedule, from its config.

AdamW over every parameter, built before any freezing so that unfreezing later needs no rebuild;
per-group learning rates scaled down from the head by timm's layer decay; `warmup_epochs` of
linear warmup from 1 % of `lr`, then cosine decay to 1 % of `lr` at `max_epochs`.
"""

from __future__ import annotations

import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from torch import nn

LR_FLOOR = 1e-2  # warmup starts at, and cosine decay ends at, this share of `lr`


def make_optimizer(model: nn.Module, cfg: dict) -> torch.optim.Optimizer:
    return create_optimizer_v2(
        model,
        opt="adamw",
        lr=cfg["lr"],
        weight_decay=cfg["weight_decay"],
        layer_decay=cfg["layer_decay"] if cfg["layer_decay"] < 1.0 else None,
    )


def make_schedule(optimizer: torch.optim.Optimizer, cfg: dict) -> CosineLRScheduler:
    """Step it with the 0-based epoch before each epoch: `schedule.step(epoch - 1)`."""
    return CosineLRScheduler(
        optimizer,
        t_initial=max(1, cfg["max_epochs"] - cfg["warmup_epochs"]),
        lr_min=cfg["lr"] * LR_FLOOR,
        warmup_t=cfg["warmup_epochs"],
        warmup_lr_init=cfg["lr"] * LR_FLOOR,
        warmup_prefix=True,
    )
