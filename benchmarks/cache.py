"""Section 3: the frozen-feature cache, on against off, for a `frozen` trial of each demo backbone.

Each backbone runs the same trial twice through the real trainable (in this process, outside
Tune: see `benchmarks.harness`), once with `feature_cache: true` and once with false, in
alternating order. The demo's data: digits 5-9, 10 training images per class, 100 validation
images per class, 32 px, batch 16. Every body group is transferred and frozen (the demo's
linear-probe baseline). The source weights are a seeded random initialisation, since the
time a prefix takes does not depend on its weights' values.

An epoch's time is the wall time between two of the trial's reports: training, validation,
metrics and the checkpoint. Epoch 1 also holds the set-up (and, when cached, computing the
features), so the steady-state ratio uses epochs 2 onwards; the whole trial's ratio is given
beside it. Outside Ray the cache lasts one trial; within a sweep later trials with the same
key skip even the first computation.
"""

from __future__ import annotations

import statistics

import torch

from benchmarks.harness import TrialRecord, run_trial
from benchmarks.report import Figure, Section
from trainables.data import load_digits_task
from trainables.models import create_backbone

DEMO_DATA = {"classes": [5, 6, 7, 8, 9], "train_per_class": 10, "val_per_class": 100, "image_size": 32}


def trial_config(backbone: str, cached: bool, epochs: int) -> dict:
    return {
        "backbone": backbone,
        "transfer_layers": 1.0,
        "unfreeze": "frozen",
        "lr": 3e-3,
        "batch_size": 16,
        "max_epochs": epochs,
        "weights": "pretrain",
        "seed": 0,
        "feature_cache": cached,
    }


def measure(backbone: str, epochs: int, *, cached_first: bool) -> dict[str, TrialRecord]:
    task = load_digits_task(
        DEMO_DATA["classes"],
        train_per_class=DEMO_DATA["train_per_class"],
        val_per_class=DEMO_DATA["val_per_class"],
        seed=0,
    )
    torch.manual_seed(0)
    weights = {backbone: create_backbone(backbone, len(DEMO_DATA["classes"])).state_dict()}
    records = {}
    for cached in (True, False) if cached_first else (False, True):
        config = trial_config(backbone, cached, epochs)
        records["on" if cached else "off"] = run_trial(
            config, task=task, image_size=DEMO_DATA["image_size"], source_weights=weights
        )
    return records


def run(profile) -> Section:
    figures, details, totals = [], {}, []
    for i, backbone in enumerate(profile.cache_backbones):
        records = measure(backbone, profile.cache_epochs, cached_first=i % 2 == 0)
        on, off = records["on"], records["off"]
        on_epochs, off_epochs = on.epoch_walls(), off.epoch_walls()
        used = [r.get("feature_cache", 0) for r in on.reports]
        differences = {
            key: max(abs(a[key] - b[key]) for a, b in zip(on.reports, off.reports, strict=True))
            for key in ("val_acc", "val_loss", "train_loss")
        }
        per_epoch = [b / a for a, b in zip(on_epochs[1:], off_epochs[1:], strict=True)] or [off.wall_s / on.wall_s]
        totals.append(off.wall_s / on.wall_s)
        details[backbone] = {
            "epoch_s_cache_on": on_epochs,
            "epoch_s_cache_off": off_epochs,
            "trial_s_cache_on": on.wall_s,
            "trial_s_cache_off": off.wall_s,
            "feature_cache_metric": used,
            "max_abs_difference": differences,
        }
        figures.append(
            Figure(
                "cache",
                f"{backbone} frozen: epoch time off / on",
                per_epoch,
                goal=(">=", 5.0),
                over="epochs",
                how=(
                    f"epochs 2-{profile.cache_epochs}, wall between reports; median epoch "
                    f"{statistics.median(off_epochs[1:] or off_epochs):.3f} s off, "
                    f"{statistics.median(on_epochs[1:] or on_epochs):.3f} s on; cached epochs {sum(used)}/{len(used)}; "
                    f"max |val_acc off - on| {differences['val_acc']:.1e}"
                ),
            )
        )
    figures.append(
        Figure(
            "cache",
            "frozen trial, whole trial time off / on",
            totals,
            over="backbones",
            how=f"{profile.cache_epochs} epochs including set-up and the first (feature-computing) epoch, one trial",
        )
    )
    return Section("Frozen-feature cache", figures, details)
