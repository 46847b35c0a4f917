"""The replay loop behind section 2: real searchers and schedulers driven over the recorded table.

A discrete-event loop drives the real searcher and scheduler objects through the calls Tune's
controller makes, in the order it makes them: `suggest`; then per result the scheduler's
decision, `on_trial_result` unless it stopped the trial, and for the result that ends the trial
(stopped, `max_epochs`, or the one result of a trial over budget) the scheduler's and the
searcher's `on_trial_complete` only, followed by `flush_tells`. Two slots; epochs last their
recorded CPU time. Each result carries what a trial reports: val_acc, its costs (parameters, MACs,
latency, from the table) and its frozen, transferred and body layer groups (from the schedule, with
the trainable's own `frozen_group_count`). A config over a budget the searcher put in its config
reports `trainables.budgets.infeasible_result` at epoch 0, as `finetune` does, and takes no time.

Why a replay rather than Tune running a lookup trainable: trials finish in the order their
recorded durations imply (ASHA's rungs depend on that order), and hundreds of seeds per method
take minutes instead of hours of Ray start-ups. What it leaves out is Ray's own overhead, which
section 1 measures.
"""

from __future__ import annotations

import heapq
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
from ray.tune.schedulers import TrialScheduler

from benchmarks import curves
from trainables.budgets import infeasible_result, over_budget
from trainables.transfer import frozen_group_count, resolve_transfer_layers

CONCURRENCY = 2


@dataclass
class Ended:
    """A trial that ended, and the compute spent by then (every trial's finished epochs)."""

    config: dict
    outcome: str  # completed | pruned | infeasible
    epochs: int
    values: dict[str, float]  # its last result's val_acc and costs
    at_epochs: int
    at_cpu_s: float


@dataclass
class Trace:
    ended: list[Ended] = field(default_factory=list)
    trials: int = 0  # started
    trial_epochs: int = 0
    cpu_s: float = 0.0
    stopped: bool = False  # `stop` said so (else the trials or the epoch cap ran out)

    def completed(self) -> list[Ended]:
        return [e for e in self.ended if e.outcome == "completed"]


def result_of(row: dict, config: dict, epoch: int, groups: int) -> dict:
    """What the trial reports after `epoch` (1-based)."""
    k = resolve_transfer_layers(config["transfer_layers"], groups)
    frozen = frozen_group_count(
        config["unfreeze"],
        epoch=epoch,
        k=k,
        num_body_groups=groups,
        unfreeze_every=config.get("unfreeze_every", 1),
        lp_epochs=config.get("lp_epochs", 1),
    )
    return {
        "epoch": epoch,
        "training_iteration": epoch,
        "val_acc": row["val_acc"][epoch - 1],
        **costs_of(row),
        "frozen_groups": frozen,
        "transferred_groups": k,
        "body_groups": groups,
    }


def costs_of(row: dict) -> dict[str, float]:
    return {key: row[key] for key in ("total_params", "macs", "latency_ms")}


def replay(
    searcher,
    scheduler,
    table: dict,
    *,
    seed: int,
    max_trials: int,
    stop: Callable[[Trace, Ended], bool] = lambda trace, ended: False,
    max_trial_epochs: int | None = None,
) -> Trace:
    """Run until `stop` says so after a trial ends, `max_trials` have started and ended, or (checked
    at every epoch) `max_trial_epochs` have been spent."""
    np.random.seed(seed)  # ASHA draws its bracket from numpy's global generator
    max_epochs = table["max_epochs"]
    groups = {b: c["body_groups"] for b, c in table["costs"]["backbones"].items()}
    events: list[tuple[float, int, str]] = []  # (time an epoch ends, tiebreak, trial id)
    running: dict[str, SimpleNamespace] = {}
    trace, now, counter = Trace(), 0.0, 0

    def end(trial, result: dict, outcome: str) -> bool:
        scheduler.on_trial_complete(None, trial, result)
        searcher.on_trial_complete(trial.trial_id, result)
        if hasattr(searcher, "flush_tells"):
            searcher.flush_tells()  # as if Ray snapshotted at once (a sweep's ledger does so within a step)
        del running[trial.trial_id]
        values = {"val_acc": result["val_acc"], **costs_of(trial.row)}
        ended = Ended(trial.config, outcome, trial.epoch, values, trace.trial_epochs, trace.cpu_s)
        trace.ended.append(ended)
        return stop(trace, ended)

    while True:
        while len(running) < CONCURRENCY and trace.trials < max_trials:
            trial_id = f"{trace.trials:05d}"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Ray warns when a define-by-run suggestion takes over 1 s
                config = searcher.suggest(trial_id)
            trace.trials += 1
            row = table["by_key"][curves.key(config)]
            trial = SimpleNamespace(trial_id=trial_id, config=config, row=row, epoch=0)
            scheduler.on_trial_add(None, trial)
            running[trial_id] = trial
            if over_budget(costs_of(row), config):  # it reports its costs before epoch 1 and returns
                result = infeasible_result(costs_of(row))
                if scheduler.on_trial_result(None, trial, result) != TrialScheduler.STOP:
                    searcher.on_trial_result(trial_id, result)
                if end(trial, result, "infeasible"):
                    trace.stopped = True
                    return trace
                continue
            counter += 1
            heapq.heappush(events, (now + row["epoch_cpu_s"][0], counter, trial_id))
        if not events:
            return trace
        now, _, trial_id = heapq.heappop(events)
        trial = running[trial_id]
        trial.epoch += 1
        trace.trial_epochs += 1
        trace.cpu_s += trial.row["epoch_cpu_s"][trial.epoch - 1]
        result = result_of(trial.row, trial.config, trial.epoch, groups[trial.config["backbone"]])
        decision = scheduler.on_trial_result(None, trial, result)
        if decision != TrialScheduler.STOP:
            searcher.on_trial_result(trial_id, result)
        if decision == TrialScheduler.STOP or trial.epoch >= max_epochs:
            if end(trial, result, "completed" if trial.epoch >= max_epochs else "pruned"):
                trace.stopped = True
                return trace
        else:
            counter += 1
            heapq.heappush(events, (now + trial.row["epoch_cpu_s"][trial.epoch], counter, trial_id))
        if max_trial_epochs is not None and trace.trial_epochs >= max_trial_epochs:
            return trace
