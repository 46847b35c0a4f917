"""Every epoch of every trial recorded exactly once, whatever restarted in between.

Ray writes a trial's result.json on the driver's disk and uploads it with the experiment
snapshot, about every 10 s. When a trial restarts (its worker or node died, or a new driver
resumed the sweep), Ray replaces the local file with the uploaded copy (ray-project/ray#38576):
the lines written since the last upload are lost, and after a driver crash the lines never
uploaded are gone with the machine. MLflow, replayed from that file, would lose them too.

The trial itself keeps the durable copy: each checkpoint carries the history of every epoch
so far (`trainables.finetune.HISTORY_FILE`), written to storage by the worker before Tune
hears of the result. `ResultLog` rebuilds a restarting trial's file from the newest copy
plus that history, cut at the epoch the trial resumes from, so each epoch appears once.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs
from ray.air.constants import EXPR_PARAM_FILE, EXPR_RESULT_FILE
from ray.tune import Checkpoint
from ray.tune.logger import JsonLoggerCallback
from ray.tune.utils.util import SafeFallbackEncoder

from trainables.finetune import CHECKPOINT_FILE, HISTORY_FILE

logger = logging.getLogger(__name__)


def checkpoint_history(checkpoint: Checkpoint) -> list[dict]:
    """Every epoch's result up to and including the checkpoint's, oldest first ([] if unreadable)."""
    return _history_at(checkpoint.filesystem, checkpoint.path)


def _history_at(fs: pafs.FileSystem, folder: str) -> list[dict]:
    try:
        with fs.open_input_stream(f"{folder}/{HISTORY_FILE}") as stream:
            entries = json.loads(stream.readall())
        return [{**entry["metrics"], "timestamp": entry["timestamp"]} for entry in entries]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("cannot read the epoch history in %s (%s)", folder, exc)
        return []


def complete_checkpoints(fs: pafs.FileSystem, trial_dir: str) -> list[str]:
    """A trial's checkpoint folders that hold both weights and history, oldest first.

    A worker killed with its driver may have left its last checkpoint half uploaded."""
    entries = fs.get_file_info(pafs.FileSelector(trial_dir, recursive=True, allow_not_found=True))
    files = {e.path for e in entries if e.type == pafs.FileType.File}
    return sorted(
        folder
        for folder in {posixpath.dirname(path) for path in files}
        if posixpath.basename(folder).startswith("checkpoint_")
        and {f"{folder}/{CHECKPOINT_FILE}", f"{folder}/{HISTORY_FILE}"} <= files
    )


def with_history(records: list[dict], history: list[dict], through: int, backfill: dict | None = None) -> list[dict]:
    """Epochs 1..`through`, one line each, in order.

    The history is the run the checkpoint came from, so its values win where Ray's line for the
    same epoch came from an attempt that was later abandoned; Ray's bookkeeping keys stay. An
    epoch Ray lacks is the history's entry plus `backfill`."""
    lines = {int(r["epoch"]): r for r in records if "epoch" in r and r["epoch"] <= through}
    for entry in history:
        epoch = int(entry["epoch"])
        if epoch <= through:
            lines[epoch] = {**lines[epoch], **entry} if epoch in lines else {**entry, **(backfill or {})}
    return [lines[epoch] for epoch in sorted(lines)]


@dataclass(frozen=True)
class TrialRecords:
    """One trial's per-epoch results as storage holds them, and where its final weights are."""

    records: list[dict]  # one per epoch, oldest first
    final_checkpoint: str | None  # the newest complete checkpoint folder, if any


def read_trial(fs: pafs.FileSystem, trial_dir: str) -> TrialRecords:
    """Ray's result.json for the trial, with any epoch it lacks taken from the newest checkpoint's
    history (on S3 Ray uploads result.json lazily, and a driver killed mid-upload can leave it short)."""
    records = _read_lines(fs, f"{trial_dir}/{EXPR_RESULT_FILE}")
    checkpoints = complete_checkpoints(fs, trial_dir)
    newest = checkpoints[-1] if checkpoints else None
    history = _history_at(fs, newest) if newest else []
    through = max([int(r["epoch"]) for r in records if "epoch" in r] + [int(h["epoch"]) for h in history] or [0])
    return TrialRecords(records=with_history(records, history, through=through), final_checkpoint=newest)


def _read_lines(fs: pafs.FileSystem, path: str) -> list[dict]:
    """The file's records; a line torn by an interrupted upload is skipped (the history has that epoch)."""
    try:
        with fs.open_input_stream(path) as stream:
            text = stream.readall().decode()
    except (FileNotFoundError, OSError):
        return []
    records = []
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def _rebuilt(trial, records: list[dict]) -> list[dict] | None:
    """A (re)starting trial's records: what it resumes from and nothing after; None to keep them as they are."""
    if trial.checkpoint is None:
        return []  # it starts from scratch: every epoch is run and reported again
    history = checkpoint_history(trial.checkpoint)
    if not history:
        return None  # nothing to rebuild from (warned)
    backfill = {"trial_id": trial.trial_id, "config": trial.config, "restored_from_checkpoint": True}
    return with_history(records, history, through=int(history[-1]["epoch"]), backfill=backfill)


class ResultLog(JsonLoggerCallback):
    """Ray's JSON logger, made loss-free across trial restarts (see the module docstring)."""

    def __init__(self):
        super().__init__()
        self._last_epoch: dict[str, int] = {}  # trial id -> newest epoch in its file

    def _restore_from_remote(self, file_name: str, trial) -> None:
        # log_trial_start calls this before it opens the file for appending. Ray's version
        # overwrites the local file with the uploaded copy, which may be older.
        if file_name != EXPR_RESULT_FILE:
            return super()._restore_from_remote(file_name, trial)
        local = Path(trial.local_path, file_name)
        if not local.exists():  # this driver has no copy of its own: start from the uploaded one
            super()._restore_from_remote(file_name, trial)
        records = _read_lines(pafs.LocalFileSystem(), str(local))
        rebuilt = _rebuilt(trial, records)
        if rebuilt is not None:
            staged = local.with_name(f"{file_name}.rebuilt")
            staged.write_text("".join(json.dumps(r, cls=SafeFallbackEncoder) + "\n" for r in rebuilt))
            os.replace(staged, local)
            records = rebuilt
        self._last_epoch[trial.trial_id] = max((r["epoch"] for r in records if "epoch" in r), default=0)

    def update_config(self, trial, config: dict) -> None:
        # params.json only: Ray's params.pkl would put a pickle on shared storage that nothing needs.
        self._trial_configs[trial] = config
        with Path(trial.local_path, EXPR_PARAM_FILE).open("w") as file:
            json.dump(config, file, indent=2, sort_keys=True, cls=SafeFallbackEncoder)

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        if trial not in self._trial_files:
            self.log_trial_start(trial)  # before reading the newest epoch, which starting sets
        epoch = result.get("epoch")
        if epoch is not None:
            if epoch <= self._last_epoch.get(trial.trial_id, 0):
                return  # the final epoch again, re-reported by a trial restored after it finished
            self._last_epoch[trial.trial_id] = epoch
        super().log_trial_result(iteration, trial, result)
