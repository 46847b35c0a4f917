"""A trial that needs no data and no torch: a learning curve computed from its config, reported
epoch by epoch with a checkpoint that holds the history, as `trainables.finetune` reports. Its
"training" is a sleep. The contract tests run the record-keeping against real Ray Tune with it, in seconds; the
many-trials benchmark (`benchmarks.scale`) runs hundreds of them through the whole driver."""

from __future__ import annotations

import json
import math
import tempfile
import time

from ray import tune

from trainables.history import read_history, write_history

DEFAULT_EPOCH_S = 0.05


def curve(config: dict, epoch: int) -> float:
    """val_acc after `epoch` epochs: rises at a rate set by lr, to a ceiling set by dropout."""
    ceiling = 0.9 - config.get("dropout", 0.0)
    return ceiling * (1 - math.exp(-epoch * config["lr"] * 300))


def synthetic_trial(config: dict, *, epoch_s: float = DEFAULT_EPOCH_S, log: str | None = None) -> None:
    """`epoch_s` of sleep per epoch. With `log`, appends one JSON line per call: its start, end and
    time spent sleeping (the trial's "training"), for the benchmark to compare with the wall."""
    started, slept = time.time(), 0.0
    history: list[dict] = []
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            history = read_history(directory)
    for epoch in range(len(history) + 1, config["max_epochs"] + 1):
        before = time.perf_counter()
        time.sleep(epoch_s)
        slept += time.perf_counter() - before
        value = curve(config, epoch)
        metrics = {"epoch": epoch, "val_acc": value, "val_loss": 1 - value, "train_loss": 1.2 - value}
        history.append({"metrics": metrics, "timestamp": time.time()})
        if log is not None:  # before reporting: a trial that ASHA stops never returns from its report
            entry = {"start": started, "end": time.time(), "slept": slept, "epoch": epoch}
            _log(log, {"trial_id": tune.get_context().get_trial_id(), **entry})
        with tempfile.TemporaryDirectory() as directory:
            write_history(directory, history)  # the record, as a real trial's checkpoints hold it
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))


def _log(path: str, line: dict) -> None:
    with open(path, "a") as file:
        file.write(json.dumps(line) + "\n")
