"""Section 6: how many trial results per second the driver's MLflow logging writes to SQLite.

A fresh SQLite store, the sweep's own `SweepRuns` (parent run, one child per
trial, params from the config), and results shaped like the trainable's (every metric a
trial reports, drift per layer group, and Ray's bookkeeping keys). Two patterns:
- batched: `log_epochs` with every epoch of a trial at once, as the end-of-sweep replay and
  the live logger do when a trial has delivered several results since the last flush;
- one result per call: the live logger flushing after every single result (the worst case).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks.report import Figure, Section
from orchestrator.tracking import RAY_KEYS, SweepRuns

CONFIG = {
    "backbone": "test_resnet",
    "transfer_layers": 0.5,
    "unfreeze": "gradual",
    "unfreeze_every": 2,
    "lr": 0.003,
    "weight_decay": 1e-4,
    "dropout": 0.1,
    "label_smoothing": 0.05,
    "batch_size": 16,
    "max_epochs": 10,
    "weights": "pretrain",
    "seed": 0,
}


def result(trial: int, epoch: int) -> dict:
    """One epoch's result as Tune hands it to the driver."""
    acc = 0.5 + 0.04 * epoch + 0.001 * trial
    now = time.time()
    return {
        "epoch": epoch,
        "train_loss": 1.5 / epoch,
        "val_acc": acc,
        "val_loss": 1.2 / epoch,
        "val_f1": acc - 0.01,
        "val_precision": acc - 0.005,
        "val_recall": acc - 0.02,
        "lr": 0.003 / epoch,
        "frozen_groups": 2,
        "trainable_params": 120_000,
        "total_params": 180_000,
        "epoch_time_s": 0.3,
        "train_images_per_s": 170.0,
        "macs": 5_000_000,
        "latency_ms": 1.2,
        **{f"drift/{g:02d}.layer{g}": 0.01 * g * epoch for g in range(6)},
        "drift/head": 0.5,
        "feature_cache": 0,
        "node_id": "0123456789abcdef",
        "timestamp": int(now),
        "time_this_iter_s": 0.3,
        "time_total_s": 0.3 * epoch,
        "training_iteration": epoch,
        "done": False,
        "trial_id": f"{trial:08x}",
        "pid": 1234,
        "hostname": "host",
        "node_ip": "127.0.0.1",
        "date": "2026-01-01_00-00-00",
    }


def measure(*, rounds: int, trials: int, epochs: int) -> dict:
    """Per round, `trials` new child runs get `epochs` results each, first batched (every epoch
    of a trial in one `log_epochs` call) and then one result per call; rounds alternate the two
    patterns in one fresh store, which grows as a sweep's store does."""
    out: dict = {"batched": [], "one_per_call": []}
    with tempfile.TemporaryDirectory() as tmp:
        runs = SweepRuns(f"sqlite:///{Path(tmp) / 'mlflow.db'}", "bench", "sweep-bench", epochs, "val_acc")
        started = time.perf_counter()
        runs.start_parent(spec_text="experiment: bench", spec_hash="0", tags={})
        out["store_setup_s"] = time.perf_counter() - started
        for r in range(rounds):
            for pattern, per_call in (("batched", epochs), ("one_per_call", 1)):
                ids = [f"{pattern}-{r}-{t}" for t in range(trials)]
                started = time.perf_counter()
                for tid in ids:
                    runs.child(tid, CONFIG)
                child_s = time.perf_counter() - started
                started = time.perf_counter()
                for first in range(1, epochs + 1, per_call):
                    for t, tid in enumerate(ids):
                        runs.log_epochs(tid, [result(t, e) for e in range(first, min(first + per_call, epochs + 1))])
                log_s = time.perf_counter() - started
                arrived = sum(len(runs.client.get_metric_history(runs.child(t, {}), "val_acc")) for t in ids)
                if arrived != trials * epochs:
                    raise RuntimeError(f"MLflow holds {arrived} of the {trials * epochs} results logged")
                out[pattern].append(
                    {
                        "results": trials * epochs,
                        "log_s": log_s,
                        "results_per_s": trials * epochs / log_s,
                        "child_run_s_each": child_s / trials,
                    }
                )
    return out


def run(profile) -> Section:
    raw = measure(rounds=profile.tracking_rounds, trials=profile.tracking_trials, epochs=profile.tracking_epochs)
    metrics = sum(1 for k, v in result(0, 1).items() if k not in RAY_KEYS and isinstance(v, int | float))
    size = f"{profile.tracking_trials} trials x {profile.tracking_epochs} epochs per round, {metrics} metrics a result"
    figures = [
        Figure(
            "tracking",
            "MLflow results/s, batched",
            [r["results_per_s"] for r in raw["batched"]],
            unit="/s",
            goal=(">=", 200.0),
            over="rounds",
            how=f"`SweepRuns.log_epochs`, a trial's {profile.tracking_epochs} epochs per call, fresh SQLite; {size}",
        ),
        Figure(
            "tracking",
            "MLflow results/s, one result per call",
            [r["results_per_s"] for r in raw["one_per_call"]],
            unit="/s",
            over="rounds",
            how=f"`SweepRuns.log_epochs`, 1 result per call (live logger, slow trials); {size}",
        ),
    ]
    return Section("Tracking throughput", figures, raw)
