"""A trial that needs no data and no torch: a learning curve computed from its config, reported
epoch by epoch with a checkpoint that holds the history, as `trainables.finetune` reports. Its
"training" is a sleep. The contract tests run the record-keeping against real Ray Tune with it, in seconds; the
many-trials benchmark (`benchmarks.scale`) runs hundreds of them through the whole driver.

Like `finetune`, it checks the config's deployment budgets before its first epoch (`with_costs`):
parameters and MACs are the backbone's own (counted on the meta device, for 5 classes at 32 px),
and latency is a deterministic stand-in for a measurement (1 ms per million MACs), so tests know
every cost. The benchmark leaves costs out: counting them loads torch and timm in every worker."""

from __future__ import annotations

import json
import math
import tempfile
import time

from ray import tune

from trainables.history import read_history, write_history

DEFAULT_EPOCH_S = 0.05
CLASSES, IMAGE_SIZE = 5, 32
# Bigger backbones reach higher: a trade-off for tests with accuracy and a cost as objectives.
CEILING_DROP = {"test_resnet": 0.0, "test_vit": 0.05, "test_convnext": 0.1, "mobilenetv3_small_050": 0.15}


def costs(config: dict) -> dict[str, float]:
    from trainables.budgets import COSTS, static_costs  # torch and timm, only where costs are wanted

    found = dict(static_costs(config.get("backbone", "test_resnet"), CLASSES, IMAGE_SIZE))
    found[COSTS["latency_ms"]] = found[COSTS["macs"]] / 1e6
    return found


def curve(config: dict, epoch: int) -> float:
    """val_acc after `epoch` epochs: rises at a rate set by lr, to a ceiling set by dropout (and backbone)."""
    ceiling = 0.9 - config.get("dropout", 0.0) - CEILING_DROP.get(config.get("backbone"), 0.0)
    return ceiling * (1 - math.exp(-epoch * config["lr"] * 300))


def synthetic_trial(
    config: dict, *, epoch_s: float = DEFAULT_EPOCH_S, log: str | None = None, with_costs: bool = True
) -> None:
    """`epoch_s` of sleep per epoch. With `log`, appends one JSON line per call: its start, end and
    time spent sleeping (the trial's "training"), for the benchmark to compare with the wall."""
    started, slept = time.time(), 0.0
    history: list[dict] = []
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            history = read_history(directory)
    cost = costs(config) if with_costs else {}
    if cost and checkpoint is None:
        from trainables.budgets import infeasible_result, over_budget

        if over_budget(cost, config):
            tune.report(infeasible_result(cost))
            return
    for epoch in range(len(history) + 1, config["max_epochs"] + 1):
        before = time.perf_counter()
        time.sleep(epoch_s)
        slept += time.perf_counter() - before
        value = curve(config, epoch)
        metrics = {"epoch": epoch, "val_acc": value, "val_loss": 1 - value, "train_loss": 1.2 - value, **cost}
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
