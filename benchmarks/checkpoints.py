"""Section 9: bytes and seconds a trial's checkpoints write, against today's full state every epoch.

The real trainable (outside Tune: `benchmarks.harness`) runs one trial of each unfreeze schedule
(`frozen` with half the layer groups transferred; `full`, `gradual` every 2 epochs and `lp_ft`
with 2 probe epochs, everything transferred) for 10 epochs, on the demo's backbones and on
resnet50 (digits at 32 px, a few steps an epoch: the model's size is what matters here). At each
epoch, beside what the trial writes (trainables/checkpoints.py), the same model, optimizer and
history are written as every epoch wrote them before (weights and optimizer state of the whole
model, and the history); each folder is then copied to a storage folder on the same disk, as
Ray uploads a checkpoint to local storage. Seconds are the write plus the copy.

Per trial-epoch figures weigh the epochs as ASHA runs them in the demo (10 epochs, grace 2,
reduction factor 3: two thirds of the trials stop after epoch 2, two ninths after epoch 6, one
ninth runs all 10; a trial stopped early never writes the last epoch's weights), over the four
schedules equally; and, with no early stopping, every trial running all 10.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.harness import run_trial
from benchmarks.report import Figure, Section
from trainables.checkpoints import TrialState
from trainables.data import load_digits_task
from trainables.history import write_history
from trainables.models import create_backbone

MAX_EPOCHS = 10
ASHA = {2: 2 / 3, 6: 2 / 9, 10: 1 / 9}  # epochs run -> share of trials (grace 2, reduction factor 3)
SCHEDULES = {
    "frozen": {"unfreeze": "frozen", "transfer_layers": 0.5},
    "full": {"unfreeze": "full", "transfer_layers": 1.0},
    "gradual": {"unfreeze": "gradual", "transfer_layers": 1.0, "unfreeze_every": 2},
    "lp_ft": {"unfreeze": "lp_ft", "transfer_layers": 1.0, "lp_epochs": 2},
}


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _copied(folder: Path, storage: Path) -> float:
    """Seconds to copy `folder` into `storage`, as Ray's upload to local storage does (then removed)."""
    started = time.perf_counter()
    target = storage / folder.name
    shutil.copytree(folder, target)
    seconds = time.perf_counter() - started
    shutil.rmtree(target)
    return seconds


class Meter:
    """Wraps TrialState.write: each epoch's new checkpoint and today's, measured side by side."""

    def __init__(self, scratch: Path):
        self.scratch, self.storage, self.epochs = scratch, scratch / "storage", []
        self.storage.mkdir(exist_ok=True)
        self._write = TrialState.write

    def __enter__(self):
        meter = self

        def write(state, directory, history, **kwargs):
            started = time.perf_counter()
            meter._write(state, directory, history, **kwargs)
            new_s = time.perf_counter() - started
            new_bytes = _folder_bytes(Path(directory))
            new_s += _copied(Path(directory), meter.storage)
            with tempfile.TemporaryDirectory(dir=meter.scratch) as before:
                started = time.perf_counter()
                epoch = history[-1]["metrics"]["epoch"]
                full = {"model": state.model.state_dict(), "optimizer": state.optimizer.state_dict(), "epoch": epoch}
                torch.save(full, os.path.join(before, "trial.pt"))  # what every epoch wrote before
                write_history(before, history)
                old_s = time.perf_counter() - started
                old_bytes = _folder_bytes(Path(before))
                old_s += _copied(Path(before), meter.storage)
            meter.epochs.append({"new_bytes": new_bytes, "new_s": new_s, "old_bytes": old_bytes, "old_s": old_s})

        TrialState.write = write
        return self

    def __exit__(self, *exc):
        TrialState.write = self._write


def measure(backbone: str, scratch: Path) -> dict[str, list[dict]]:
    task = load_digits_task([5, 6, 7, 8, 9], train_per_class=2, val_per_class=2, seed=0)
    torch.manual_seed(0)
    weights = {backbone: create_backbone(backbone, 5).state_dict()}
    per_schedule = {}
    for name, schedule in SCHEDULES.items():
        config = {"backbone": backbone, "lr": 1e-3, "batch_size": 8, "max_epochs": MAX_EPOCHS, "weights": "pretrain"}
        with Meter(scratch) as meter:
            run_trial({**config, **schedule}, task=task, image_size=32, source_weights=weights)
        per_schedule[name] = meter.epochs
    return per_schedule


def per_trial_epoch(per_schedule: dict[str, list[dict]], key: str, stops: dict[int, float]) -> float:
    """Mean of `key` per trial-epoch over the schedules, trials stopping after `stops` epochs."""
    total = epochs = 0.0
    for run in per_schedule.values():
        for stop, share in stops.items():
            total += share * sum(e[key] for e in run[:stop])
            epochs += share * stop
    return total / epochs


def run(profile) -> Section:
    figures, details = [], {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for label, backbones in (("demo backbones", profile.checkpoint_demo), ("large", profile.checkpoint_large)):
                label = label if label != "large" else ", ".join(backbones)
                runs = {b: measure(b, Path(tmp)) for b in backbones}
                details[label] = runs
                figures += _figures(label, runs)
    finally:
        torch.set_num_threads(threads)
    return Section("Checkpoints", figures, details)


def _figures(label: str, runs: dict[str, dict[str, list[dict]]]) -> list[Figure]:
    figures = []
    for what, unit in (("bytes", "bytes"), ("s", "seconds")):
        asha = [
            per_trial_epoch(r, f"new_{what}", ASHA) / per_trial_epoch(r, f"old_{what}", ASHA) for r in runs.values()
        ]
        full_length = {MAX_EPOCHS: 1.0}
        alone = [
            per_trial_epoch(r, f"new_{what}", full_length) / per_trial_epoch(r, f"old_{what}", full_length)
            for r in runs.values()
        ]
        scale, suffix = (2**20, "MiB") if what == "bytes" else (1e-3, "ms")
        numbers = "; ".join(
            f"{b}: {per_trial_epoch(r, f'new_{what}', ASHA) / scale:.3g} against "
            f"{per_trial_epoch(r, f'old_{what}', ASHA) / scale:.3g} {suffix}"
            for b, r in runs.items()
        )
        figures += [
            Figure(
                "checkpoints",
                f"{label}: {unit} written per trial-epoch, ASHA's stops, 4 schedules: new / every epoch's full state",
                asha,
                goal=("<=", 1 / 3),
                over="backbones",
                how=f"{numbers} per trial-epoch (write + copy to storage)",
            ),
            Figure(
                "checkpoints",
                f"{label}: {unit} written per trial-epoch, every trial to epoch {MAX_EPOCHS}: new / full state",
                alone,
                over="backbones",
                how="no early stopping: each trial writes its last epoch's weights",
            ),
        ]
    return figures
