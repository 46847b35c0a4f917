"""A trial's per-epoch records read back from storage: result.json, filled from its checkpoints' history."""

from __future__ import annotations

import json
import logging
import posixpath
from dataclasses import dataclass

import pyarrow.fs as pafs
from ray.air.constants import EXPR_RESULT_FILE
from ray.tune import Checkpoint

from trainables.checkpoints import WEIGHTS_FILE
from trainables.history import HISTORY_FILE

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
    """A trial's checkpoint folders that hold its history, oldest first.

    Every checkpoint has the history; a worker killed with its driver may have left its last one
    half uploaded, without it. What else a checkpoint holds: `trainables.checkpoints`."""
    return [folder for folder, names in _checkpoint_files(fs, trial_dir) if HISTORY_FILE in names]


def _checkpoint_files(fs: pafs.FileSystem, trial_dir: str) -> list[tuple[str, set[str]]]:
    """(folder, names of the files in it) of each of a trial's checkpoints, oldest first."""
    entries = fs.get_file_info(pafs.FileSelector(trial_dir, recursive=True, allow_not_found=True))
    folders: dict[str, set[str]] = {}
    for entry in entries:
        folder = posixpath.dirname(entry.path)
        if entry.type == pafs.FileType.File and posixpath.basename(folder).startswith("checkpoint_"):
            folders.setdefault(folder, set()).add(posixpath.basename(entry.path))
    return sorted(folders.items())


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
    final_checkpoint: str | None  # the checkpoint folder with the weights of its last epoch, if it wrote them


def read_trial(fs: pafs.FileSystem, trial_dir: str) -> TrialRecords:
    """Ray's result.json for the trial, with any epoch it lacks taken from the newest checkpoint's
    history (on S3 Ray uploads result.json lazily, and a driver killed mid-upload can leave it short)."""
    records = _read_lines(fs, f"{trial_dir}/{EXPR_RESULT_FILE}")
    checkpoints = _checkpoint_files(fs, trial_dir)
    with_history_file = [folder for folder, names in checkpoints if HISTORY_FILE in names]
    history = _history_at(fs, with_history_file[-1]) if with_history_file else []
    through = max([int(r["epoch"]) for r in records if "epoch" in r] + [int(h["epoch"]) for h in history] or [0])
    weights = [folder for folder, names in checkpoints if WEIGHTS_FILE in names]
    return TrialRecords(
        records=with_history(records, history, through=through), final_checkpoint=weights[-1] if weights else None
    )


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
