"""One epoch of training and one pass of evaluation, shared by fine-tuning and pretraining."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import precision_recall_fscore_support
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
from torch import nn
from torch.utils.data import DataLoader

from trainables.regularizers import L2SP

SOFT_TARGET_LOSS = SoftTargetCrossEntropy()  # mixup's soft labels (label smoothing included)


@dataclass(frozen=True)
class EpochStats:
    loss: float
    images_per_s: float


def train_one_epoch(
    model: nn.Module,
    batches: DataLoader,
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device,
    label_smoothing: float = 0.0,
    mixup: Mixup | None = None,
    l2sp: L2SP | None = None,
    precision: str = "fp32",
    channels_last: bool = False,
) -> EpochStats:
    """Mean training loss over the epoch (NaN or inf if the loss diverged)."""
    start, total, seen = time.perf_counter(), 0.0, 0
    for images, labels in batches:
        images, labels = to_device(images, device, channels_last), labels.to(device, non_blocking=True)
        if mixup is not None:
            if len(labels) % 2:  # timm's batch-mode Mixup pairs images, so it needs an even batch
                images, labels = images[:-1], labels[:-1]
            if len(labels) == 0:
                continue
            images, targets = mixup(images, labels)
        with autocast(device, precision):
            logits = model(images).float()  # the loss in fp32
        if mixup is not None:
            loss = SOFT_TARGET_LOSS(logits, targets)
        else:
            loss = F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
        if l2sp is not None:
            loss = loss + l2sp.penalty().to(device)
        if not torch.isfinite(loss):
            return EpochStats(loss=loss.item(), images_per_s=0.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(labels)
        seen += len(labels)
    return EpochStats(loss=total / max(seen, 1), images_per_s=seen / (time.perf_counter() - start))


EVAL_METRICS = ("acc", "loss", "f1", "precision", "recall")  # the keys `evaluate` returns


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: DataLoader,
    *,
    device: torch.device,
    precision: str = "fp32",
    channels_last: bool = False,
) -> dict[str, float]:
    """Accuracy, cross-entropy and macro precision / recall / F1."""
    model.eval()
    logits, labels = [], []
    for images, targets in batches:
        with autocast(device, precision):
            logits.append(model(to_device(images, device, channels_last)).float().cpu())
        labels.append(targets)
    logits, labels = torch.cat(logits), torch.cat(labels)
    preds = logits.argmax(dim=1)
    macro_precision, macro_recall, macro_f1, _ = precision_recall_fscore_support(
        labels.numpy(), preds.numpy(), average="macro", zero_division=0, labels=np.unique(labels.numpy())
    )
    return {
        "acc": int((preds == labels).sum()) / len(labels),  # exact: 0.912, not float32's 0.91200000047
        "loss": float(F.cross_entropy(logits, labels)),
        "f1": float(macro_f1),
        "precision": float(macro_precision),
        "recall": float(macro_recall),
    }


def autocast(device: torch.device, precision: str):
    """bf16 autocast on CUDA when `precision` asks for it; the CPU always computes in fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda" and precision == "bf16")


def to_device(images: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """Asynchronous copy (from pinned memory on CUDA); channels_last for image batches on CUDA."""
    if channels_last and device.type == "cuda" and images.dim() == 4:
        return images.to(device, non_blocking=True, memory_format=torch.channels_last)
    return images.to(device, non_blocking=True)
