"""The one seed rule: every epoch of every trial draws from its own seed, so a resumed epoch repeats."""

from __future__ import annotations

import random

import numpy as np
import torch

EPOCHS_PER_SEED = 100_003  # a prime larger than any max_epochs the spec allows: (seed, epoch) pairs never collide


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * EPOCHS_PER_SEED + epoch


def seed_epoch(seed: int, epoch: int) -> None:
    """Seed `random`, numpy and torch for one epoch of one trial: augmentation draws from `random`
    and torch, timm's mixup and cutmix from numpy."""
    random.seed(epoch_seed(seed, epoch))
    np.random.seed(epoch_seed(seed, epoch) % 2**32)
    torch.manual_seed(epoch_seed(seed, epoch))
