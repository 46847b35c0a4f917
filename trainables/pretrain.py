"""Source-task pretraining: the weights that `weights.source: pretrain` transfers from."""

from __future__ import annotations

import torch
from timm.optim import create_optimizer_v2

from trainables.data import TaskData
from trainables.loop import train_one_epoch
from trainables.models import create_backbone, normalization


def pretrain_backbone(
    backbone: str, task: TaskData, *, epochs: int, seed: int, lr: float = 3e-3, batch_size: int = 64, threads: int = 1
) -> dict[str, torch.Tensor]:
    """Train `backbone` on the source task from scratch; returns its state dict (head included)."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = create_backbone(backbone, task.num_classes)
    preprocess = normalization(model)
    optimizer = create_optimizer_v2(model, opt="adamw", lr=lr, weight_decay=1e-4)
    model.train()
    for epoch in range(1, epochs + 1):
        train_one_epoch(
            model, preprocess, task.train, optimizer, batch_size=batch_size, shuffle_seed=seed * 100_003 + epoch
        )
    return {key: value.detach().clone().contiguous() for key, value in model.state_dict().items()}
