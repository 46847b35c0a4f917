"""A trial that needs no data and no torch: a learning curve computed from its config, reported
epoch by epoch with a checkpoint, as `trainables.finetune` reports. For tests of the record-keeping
against real Ray Tune, in seconds."""

from __future__ import annotations

import json
import math
import os
import tempfile
import time

from ray import tune

from trainables.checkpoints import CHECKPOINT_FILE, HISTORY_FILE


def curve(config: dict, epoch: int) -> float:
    """val_acc after `epoch` epochs: rises at a rate set by lr, to a ceiling set by dropout."""
    ceiling = 0.9 - config.get("dropout", 0.0)
    return ceiling * (1 - math.exp(-epoch * config["lr"] * 300))


def synthetic_trial(config: dict) -> None:
    history: list[dict] = []
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory, open(os.path.join(directory, HISTORY_FILE)) as file:
            history = json.load(file)
    for epoch in range(len(history) + 1, config["max_epochs"] + 1):
        time.sleep(config.get("epoch_s", 0.05))
        value = curve(config, epoch)
        metrics = {"epoch": epoch, "val_acc": value, "val_loss": 1 - value, "train_loss": 1.2 - value}
        history.append({"metrics": metrics, "timestamp": time.time()})
        with tempfile.TemporaryDirectory() as directory:
            with open(os.path.join(directory, HISTORY_FILE), "w") as file:
                json.dump(history, file)
            with open(os.path.join(directory, CHECKPOINT_FILE), "wb") as file:
                file.write(b"synthetic")
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
