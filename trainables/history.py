"""A trial's epoch history: every epoch's metrics so far, the durable copy of its record.

The trial writes it into every checkpoint, so it reaches storage inside `tune.report`, before
the driver hears of the result: whatever the driver lost in a crash, the trial's newest
checkpoint still has it (`orchestrator.records` rebuilds Ray's records from it). Plain JSON, so
reading it needs no torch.
"""

from __future__ import annotations

import json
import os

HISTORY_FILE = "history.json"


def write_history(directory: str, history: list[dict]) -> None:
    """`history`: one {"metrics": ..., "timestamp": ...} per epoch, oldest first."""
    with open(os.path.join(directory, HISTORY_FILE), "w") as file:
        json.dump(history, file)


def read_history(directory: str) -> list[dict]:
    with open(os.path.join(directory, HISTORY_FILE)) as file:
        return json.load(file)


def last_epoch(history: list[dict]) -> int:
    return int(history[-1]["metrics"]["epoch"]) if history else 0
