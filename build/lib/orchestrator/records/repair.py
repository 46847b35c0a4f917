"""Making a restored sweep's trials restartable after a driver crash.

Ray snapshots its experiment state now and then (on S3, uploading it lazily), while checkpoint
retention deletes a trial's older checkpoints at once. A driver killed between the two leaves a
snapshot that names a deleted checkpoint, and Ray then fails that trial on restore. Before any
trial restarts, `CheckpointRepair` points such trials at their newest checkpoint that is still
on storage, or at none (the trial starts over).
"""

from __future__ import annotations

import logging

import pyarrow.fs as pafs
from ray.tune import Callback, Checkpoint

from orchestrator.records.trials import complete_checkpoints

logger = logging.getLogger(__name__)


def newest_checkpoint(missing: Checkpoint) -> Checkpoint | None:
    """The trial's newest complete checkpoint beside the missing one (weights and history both on storage)."""
    fs, trial_dir = missing.filesystem, missing.path.rstrip("/").rsplit("/", 1)[0]
    complete = complete_checkpoints(fs, trial_dir)
    return Checkpoint(complete[-1], filesystem=fs) if complete else None


def repair(trial) -> bool:
    """Re-point one trial whose latest checkpoint is gone; True if it needed it."""
    checkpoint = trial.checkpoint
    if checkpoint is None or checkpoint.filesystem.get_file_info(checkpoint.path).type != pafs.FileType.NotFound:
        return False
    replacement = newest_checkpoint(checkpoint)
    manager = trial.run_metadata.checkpoint_manager
    manager._latest_checkpoint_result.checkpoint = replacement  # Ray keeps no public setter for this
    if replacement is None:
        manager._latest_checkpoint_result = None
    logger.warning(
        "trial %s: checkpoint %s is gone; resuming from %s",
        trial.trial_id,
        checkpoint.path,
        replacement.path if replacement else "scratch",
    )
    return True


class CheckpointRepair(Callback):
    def __init__(self):
        self._checked = False

    def __getstate__(self) -> dict:
        return {"_checked": False}  # a restored sweep checks again

    def on_step_begin(self, iteration, trials, **info):
        if not self._checked:
            self._checked = True
            for trial in trials:
                repair(trial)
