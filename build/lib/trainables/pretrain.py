"""Source-task pretraining: the weights that `weights.source: pretrain` transfers from."""

from __future__ import annotations

import random

import torch
from timm.optim import create_optimizer_v2

from trainables.data import TaskData
from trainables.loop import train_one_epoch
from trainables.models import create_backbone
from trainables.seeds import epoch_seed
from trainables.transforms import data_config, eval_transform, loader


def pretrain_backbone(
    backbone: str,
    task: TaskData,
    *,
    image_size: int | None,
    epochs: int,
    seed: int,
    lr: float = 3e-3,
    batch_size: int = 64,
    threads: int = 1,
) -> dict[str, torch.Tensor]:
    """Train `backbone` from scratch on the source task; returns its state dict (head included)."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    random.seed(seed)
    model = create_backbone(backbone, task.num_classes)
    transform = eval_transform(data_config(model, image_size))
    optimizer = create_optimizer_v2(model, opt="adamw", lr=lr, weight_decay=1e-4)
    model.train()
    for epoch in range(1, epochs + 1):
        batches = loader(task.train, transform, batch_size=batch_size, shuffle_seed=epoch_seed(seed, epoch))
        train_one_epoch(model, batches, optimizer, device=torch.device("cpu"))
    return {key: value.detach().clone().contiguous() for key, value in model.state_dict().items()}
