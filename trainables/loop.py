"""One epoch of training and one pass of evaluation, shared by fine-tuning and pretraining."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import precision_recall_fscore_support
from torch import nn

from trainables.data import ImageSplit, batches


@dataclass(frozen=True)
class EpochStats:
    loss: float
    images_per_s: float


def train_one_epoch(
    model: nn.Module,
    preprocess: nn.Module,
    split: ImageSplit,
    optimizer: torch.optim.Optimizer,
    *,
    batch_size: int,
    shuffle_seed: int,
    label_smoothing: float = 0.0,
) -> EpochStats:
    """Mean training loss over the epoch; NaN or inf if the loss diverged."""
    start, total, seen = time.perf_counter(), 0.0, 0
    for images, labels in batches(split, batch_size, shuffle_seed=shuffle_seed):
        logits = model(preprocess(images))
        loss = F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
        if not torch.isfinite(loss):
            return EpochStats(loss=float(loss), images_per_s=0.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(labels)
        seen += len(labels)
    return EpochStats(loss=total / max(seen, 1), images_per_s=seen / (time.perf_counter() - start))


@torch.no_grad()
def evaluate(model: nn.Module, preprocess: nn.Module, split: ImageSplit, *, batch_size: int = 256) -> dict[str, float]:
    """Accuracy, cross-entropy and macro precision / recall / F1 on a split."""
    model.eval()
    logits = torch.cat([model(preprocess(images)) for images, _ in batches(split, batch_size)])
    labels = split.labels
    preds = logits.argmax(dim=1)
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels.numpy(), preds.numpy(), average="macro", zero_division=0, labels=np.unique(labels.numpy())
    )
    return {
        "acc": float((preds == labels).float().mean()),
        "loss": float(F.cross_entropy(logits, labels)),
        "f1": float(f1),
        "precision": float(precision),
        "recall": float(recall),
    }
