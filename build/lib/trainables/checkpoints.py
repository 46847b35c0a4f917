"""What a trial's checkpoint holds: its weights and optimizer state, and the history of every epoch.

The history beside the weights is the durable copy of the trial's record: the worker writes it to
storage inside `tune.report`, before the driver hears of the result, so whatever the driver lost
in a crash, the checkpoint a trial resumes from still has it (`orchestrator.records`). Weights are
read with `torch.load(weights_only=True)`: a checkpoint on shared storage can run no code.
"""

from __future__ import annotations

import json
import os

import torch
from torch import nn

CHECKPOINT_FILE = "trial.pt"
HISTORY_FILE = "history.json"


def write_checkpoint(directory: str, history: list[dict], model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Save the weights, the optimizer state and the whole `history` (one entry per epoch) in `directory`."""
    epoch = history[-1]["metrics"]["epoch"]
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch}
    torch.save(state, os.path.join(directory, CHECKPOINT_FILE))
    with open(os.path.join(directory, HISTORY_FILE), "w") as file:
        json.dump(history, file)


def read_checkpoint(
    directory: str, model: nn.Module, optimizer: torch.optim.Optimizer | None, device: torch.device
) -> tuple[int, list[dict]]:
    """Load a checkpoint into `model` (and `optimizer`); returns its epoch and the history so far."""
    state = torch.load(os.path.join(directory, CHECKPOINT_FILE), map_location=device, weights_only=True)
    model.load_state_dict(state["model"])
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    with open(os.path.join(directory, HISTORY_FILE)) as file:
        return int(state["epoch"]), json.load(file)
