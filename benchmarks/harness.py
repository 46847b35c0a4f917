"""Runs `trainables.finetune` outside Ray Tune, in plain worker processes.

The comparisons that need "the same training function without Ray" run the real trainable
here. Outside a Tune session its few calls into Tune and Ray need a stand-in, and
`plain_session` provides one, leaving the training itself untouched:
- `tune.report` records each epoch's metrics with the wall and CPU time of the call, and
  drops the checkpoint (the trainable still writes it; nothing copies it to storage);
- `tune.get_checkpoint` returns None (every trial starts fresh);
- `tune.get_context().get_trial_resources()` reports the CPUs the trial was given, so it
  sizes its threads as it would under Tune;
- `ray.get` hands source weights over directly instead of through the object store, and
  `ray.get_runtime_context().get_node_id()` answers "plain".
Anything else is passed through to the real modules.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import ray
import torch
from ray import tune

# The module, whose `tune` and `ray` the stand-ins replace (its function has the same name).
finetune_module = importlib.import_module("trainables.finetune")


@dataclass
class TrialRecord:
    config: dict[str, Any]
    started: float  # time.time() when the trainable was called
    ended: float
    reports: list[dict[str, Any]] = field(default_factory=list)  # metrics + "_wall" + "_cpu" per epoch
    thread_cpu_s: float = 0.0  # CPU time of the thread that ran the trial
    process_cpu_s: float = 0.0  # CPU time of the whole process meanwhile

    @property
    def wall_s(self) -> float:
        return self.ended - self.started

    def epoch_walls(self) -> list[float]:
        """Seconds between consecutive reports; the first includes the trial's set-up."""
        stamps = [self.started] + [r["_wall"] for r in self.reports]
        return [b - a for a, b in itertools.pairwise(stamps)]

    def epoch_cpus(self) -> list[float]:
        stamps = [0.0] + [r["_cpu"] for r in self.reports]
        return [b - a for a, b in itertools.pairwise(stamps)]


class _Tune:
    def __init__(self, record: TrialRecord, cpus: int):
        self._record, self._cpus, self._cpu0 = record, cpus, time.process_time()

    def report(self, metrics: dict, checkpoint=None) -> None:
        self._record.reports.append({**metrics, "_wall": time.time(), "_cpu": time.process_time() - self._cpu0})

    def get_checkpoint(self):
        return None

    def get_context(self):
        resources = SimpleNamespace(required_resources={"CPU": float(self._cpus)})
        return _Passthrough(tune.get_context(), get_trial_resources=lambda: resources)

    def __getattr__(self, name: str):
        return getattr(tune, name)


class _Ray:
    def get(self, value, *args, **kwargs):
        return ray.get(value, *args, **kwargs) if isinstance(value, ray.ObjectRef) else value

    def get_runtime_context(self):
        return SimpleNamespace(get_node_id=lambda: "plain")

    def __getattr__(self, name: str):
        return getattr(ray, name)


class _Passthrough:
    def __init__(self, inner, **overrides):
        self._inner, self._overrides = inner, overrides

    def __getattr__(self, name: str):
        return self._overrides[name] if name in self._overrides else getattr(self._inner, name)


@contextlib.contextmanager
def plain_session(record: TrialRecord, cpus: int):
    saved = finetune_module.tune, finetune_module.ray
    finetune_module.tune, finetune_module.ray = _Tune(record, cpus), _Ray()
    try:
        yield
    finally:
        finetune_module.tune, finetune_module.ray = saved


def run_trial(config: dict, *, task, image_size: int | None, source_weights: dict, cpus: int = 1) -> TrialRecord:
    """One trial of the real trainable in this process (which keeps its torch thread count)."""
    threads = torch.get_num_threads()
    record = TrialRecord(config=dict(config), started=time.time(), ended=0.0)
    thread0, process0 = time.thread_time(), time.process_time()
    try:
        with plain_session(record, cpus):
            finetune_module.finetune(config, task=task, image_size=image_size, source_weights=source_weights)
    finally:
        torch.set_num_threads(threads)
    record.ended = time.time()
    record.thread_cpu_s, record.process_cpu_s = time.thread_time() - thread0, time.process_time() - process0
    return record


# -- a pool of plain worker processes --------------------------------------------------------
# Like Ray's object store and reused actors, each worker receives the task and weights once and
# runs trial after trial.
_worker_state: dict[str, Any] = {}


def _init_worker(task, image_size, source_weights, cpus) -> None:
    _worker_state.update(task=task, image_size=image_size, source_weights=source_weights, cpus=cpus)


def run_in_worker(config: dict) -> TrialRecord:
    """Submit this to a `worker_pool`."""
    return run_trial(config, **_worker_state)


@contextlib.contextmanager
def worker_pool(concurrency: int, *, task, image_size: int | None, source_weights: dict, cpus: int = 1):
    """`concurrency` fresh worker processes holding the task and weights, one trial at a time each."""
    saved = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(cpus)  # workers start with it, as Ray sets it for its own
    try:
        with ProcessPoolExecutor(
            max_workers=concurrency,
            mp_context=multiprocessing.get_context("spawn"),  # a fresh interpreter, as a Ray worker is
            initializer=_init_worker,
            initargs=(task, image_size, source_weights, cpus),
        ) as pool:
            yield pool
    finally:
        if saved is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = saved


def run_pool(
    configs: list[dict], *, concurrency: int, task, image_size: int | None, source_weights: dict, cpus: int = 1
) -> tuple[list[TrialRecord], float, float]:
    """Run configs in a fresh `worker_pool`, in order. Returns the records and the wall interval
    (pool created, last trial ended)."""
    started = time.time()
    with worker_pool(concurrency, task=task, image_size=image_size, source_weights=source_weights, cpus=cpus) as pool:
        records = list(pool.map(run_in_worker, configs))
    return records, started, max(r.ended for r in records)
