"""A trial that needs no data and no training: a learning curve computed from its config, reported
epoch by epoch with a checkpoint, as `trainables.finetune` reports. For tests of the record-keeping
against real Ray Tune, in seconds.

Like `finetune`, it checks the config's deployment budgets before its first epoch: parameters and
MACs are the backbone's own (counted on the meta device, for 5 classes at 32 px), and latency is a
deterministic stand-in for a measurement (1 ms per million MACs), so tests know every cost."""

from __future__ import annotations

import json
import math
import os
import tempfile
import time

from ray import tune

from trainables.budgets import COSTS, infeasible_result, over_budget, static_costs
from trainables.checkpoints import CHECKPOINT_FILE, HISTORY_FILE

CLASSES, IMAGE_SIZE = 5, 32
# Bigger backbones reach higher: a trade-off for tests with accuracy and a cost as objectives.
CEILING_DROP = {"test_resnet": 0.0, "test_vit": 0.05, "test_convnext": 0.1, "mobilenetv3_small_050": 0.15}


def costs(config: dict) -> dict[str, float]:
    found = dict(static_costs(config.get("backbone", "test_resnet"), CLASSES, IMAGE_SIZE))
    found[COSTS["latency_ms"]] = found[COSTS["macs"]] / 1e6
    return found


def curve(config: dict, epoch: int) -> float:
    """val_acc after `epoch` epochs: rises at a rate set by lr, to a ceiling set by dropout (and backbone)."""
    ceiling = 0.9 - config.get("dropout", 0.0) - CEILING_DROP.get(config.get("backbone"), 0.0)
    return ceiling * (1 - math.exp(-epoch * config["lr"] * 300))


def synthetic_trial(config: dict) -> None:
    history: list[dict] = []
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory, open(os.path.join(directory, HISTORY_FILE)) as file:
            history = json.load(file)
    cost = costs(config)
    if checkpoint is None and over_budget(cost, config):
        tune.report(infeasible_result(cost))
        return
    for epoch in range(len(history) + 1, config["max_epochs"] + 1):
        time.sleep(config.get("epoch_s", 0.05))
        value = curve(config, epoch)
        metrics = {"epoch": epoch, "val_acc": value, "val_loss": 1 - value, "train_loss": 1.2 - value, **cost}
        history.append({"metrics": metrics, "timestamp": time.time()})
        with tempfile.TemporaryDirectory() as directory:
            with open(os.path.join(directory, HISTORY_FILE), "w") as file:
                json.dump(history, file)
            with open(os.path.join(directory, CHECKPOINT_FILE), "wb") as file:
                file.write(b"synthetic")
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
