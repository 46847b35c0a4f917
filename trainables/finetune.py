"""The per-trial fine-tuning recipe, run by Ray Tune on a worker.

Reads top to bottom: build the model, transfer weights, set up the optimizer and schedule,
resume if Tune hands us a checkpoint, then train epoch by epoch and report.
"""

from __future__ import annotations

import math
import os
import tempfile
import time

import torch
from ray import tune
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from torch import nn

from trainables.data import TaskData
from trainables.hyperparams import with_defaults
from trainables.loop import evaluate, train_one_epoch
from trainables.models import create_backbone, layer_groups, normalization
from trainables.transfer import Freezer, frozen_group_count, resolve_transfer_layers, transfer_weights

CHECKPOINT_FILE = "trial.pt"


def finetune(config: dict, *, task: TaskData, source_weights: dict[str, dict[str, torch.Tensor]]) -> None:
    cfg = with_defaults(config)
    torch.set_num_threads(_trial_cpus())
    torch.manual_seed(cfg["seed"])

    # Model: new head for the target classes; the first k body groups from the source task.
    model = create_backbone(cfg["backbone"], task.num_classes, dropout=cfg["dropout"])
    groups = layer_groups(model)
    k = resolve_transfer_layers(cfg["transfer_layers"], len(groups.body))
    if cfg["weights"] == "none":
        k = 0
    if k:
        transfer_weights(model, source_weights[cfg["backbone"]], groups, k)
    preprocess = normalization(model)

    # Optimizer over every parameter (built before freezing, so later unfreezing needs no rebuild).
    optimizer = create_optimizer_v2(model, opt="adamw", lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    max_epochs = cfg["max_epochs"]
    scheduler = CosineLRScheduler(
        optimizer,
        t_initial=max_epochs,
        lr_min=cfg["lr"] * 1e-2,
        warmup_t=cfg["warmup_epochs"],
        warmup_lr_init=cfg["lr"] * 1e-2,
        warmup_prefix=True,
    )
    freezer = Freezer(model, groups)

    start_epoch = _restore(model, optimizer) + 1

    for epoch in range(start_epoch, max_epochs + 1):
        freezer.freeze_first(
            frozen_group_count(
                cfg["unfreeze"],
                epoch=epoch,
                k=k,
                num_body_groups=len(groups.body),
                unfreeze_every=cfg["unfreeze_every"],
                lp_epochs=cfg["lp_epochs"],
            )
        )
        scheduler.step(epoch - 1)
        freezer.train()
        started = time.perf_counter()
        stats = train_one_epoch(
            model,
            preprocess,
            task.train,
            optimizer,
            batch_size=cfg["batch_size"],
            shuffle_seed=cfg["seed"] * 100_003 + epoch,
            label_smoothing=cfg["label_smoothing"],
        )
        if not math.isfinite(stats.loss):
            tune.report({"epoch": epoch, "train_loss": stats.loss, "diverged": 1})
            return
        val = evaluate(model, preprocess, task.val)
        metrics = {
            "epoch": epoch,
            "train_loss": stats.loss,
            **{f"val_{name}": value for name, value in val.items()},
            "lr": max(group["lr"] for group in optimizer.param_groups),
            "frozen_groups": freezer.num_frozen,
            "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "total_params": sum(p.numel() for p in model.parameters()),
            "epoch_time_s": time.perf_counter() - started,
            "train_images_per_s": stats.images_per_s,
        }
        _report_with_checkpoint(metrics, model, optimizer, epoch)


def _trial_cpus() -> int:
    try:
        resources = tune.get_context().get_trial_resources().required_resources
        return max(1, int(resources.get("CPU", 1)))
    except Exception:  # outside a Tune session (e.g. called directly)
        return max(1, min(4, os.cpu_count() or 1))


def _restore(model: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Load Tune's checkpoint if this trial is resuming; returns the last finished epoch."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return 0
    with checkpoint.as_directory() as directory:
        state = torch.load(os.path.join(directory, CHECKPOINT_FILE), weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["epoch"])


def _report_with_checkpoint(metrics: dict, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch}
        torch.save(state, os.path.join(directory, CHECKPOINT_FILE))
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))


def load_checkpoint_model(checkpoint_dir: str, config: dict, num_classes: int) -> nn.Module:
    """Rebuild a trial's model from one of its checkpoints (for registering the best)."""
    cfg = with_defaults(config)
    model = create_backbone(cfg["backbone"], num_classes, dropout=cfg["dropout"])
    state = torch.load(os.path.join(checkpoint_dir, CHECKPOINT_FILE), weights_only=True)
    model.load_state_dict(state["model"])
    return model.eval()
