"""The one seed rule: every epoch of every trial draws from its own seed, so a resumed epoch repeats."""

from __future__ import annotations

import random

import torch

EPOCHS_PER_SEED = 100_003  # a prime larger than any max_epochs the spec allows: (seed, epoch) pairs never collide


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * EPOCHS_PER_SEED + epoch


def seed_epoch(seed: int, epoch: int) -> None:
    """Seed `random` and torch (augmentation draws from both) for one epoch of one trial."""
    random.seed(epoch_seed(seed, epoch))
    torch.manual_seed(epoch_seed(seed, epoch))
