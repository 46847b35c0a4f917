"""Repairing restored trials whose snapshot names a checkpoint that retention already deleted."""

import shutil
from types import SimpleNamespace

from ray.train._internal.checkpoint_manager import _CheckpointManager
from ray.train._internal.session import _TrainingResult
from ray.tune import Checkpoint, CheckpointConfig

from orchestrator.records import repair
from trainables.history import HISTORY_FILE


class _Trial:
    """What repair() reads of a ray Trial, around Ray's real checkpoint manager."""

    def __init__(self, manager):
        self.trial_id = "t1"
        self.run_metadata = SimpleNamespace(checkpoint_manager=manager)

    @property
    def checkpoint(self):
        result = self.run_metadata.checkpoint_manager.latest_checkpoint_result
        return result.checkpoint if result else None


def _trial_with_checkpoints(tmp_path, names, latest):
    trial_dir = tmp_path / "t1"
    for name in names:
        (trial_dir / name).mkdir(parents=True)
        (trial_dir / name / HISTORY_FILE).write_text("[]")
    manager = _CheckpointManager(checkpoint_config=CheckpointConfig(num_to_keep=2))
    manager.register_checkpoint(_TrainingResult(Checkpoint(str(trial_dir / latest)), {"epoch": 1}))
    return _Trial(manager), trial_dir


def test_missing_checkpoint_is_replaced_by_the_newest_one_on_storage(tmp_path):
    trial, trial_dir = _trial_with_checkpoints(
        tmp_path, ["checkpoint_000000", "checkpoint_000001", "checkpoint_000002"], latest="checkpoint_000000"
    )
    shutil.rmtree(trial_dir / "checkpoint_000000")  # retention deleted it after the snapshot
    assert repair(trial)
    assert trial.checkpoint.path == str(trial_dir / "checkpoint_000002")


def test_a_half_uploaded_checkpoint_is_passed_over(tmp_path):
    trial, trial_dir = _trial_with_checkpoints(
        tmp_path, ["checkpoint_000000", "checkpoint_000001", "checkpoint_000002"], latest="checkpoint_000000"
    )
    shutil.rmtree(trial_dir / "checkpoint_000000")
    (trial_dir / "checkpoint_000002" / HISTORY_FILE).unlink()  # its worker died mid-upload
    assert repair(trial)
    assert trial.checkpoint.path == str(trial_dir / "checkpoint_000001")


def test_trial_without_any_checkpoint_left_starts_over(tmp_path):
    trial, trial_dir = _trial_with_checkpoints(tmp_path, ["checkpoint_000000"], latest="checkpoint_000000")
    shutil.rmtree(trial_dir / "checkpoint_000000")
    assert repair(trial)
    assert trial.checkpoint is None


def test_existing_checkpoint_is_left_alone(tmp_path):
    trial, trial_dir = _trial_with_checkpoints(tmp_path, ["checkpoint_000000"], latest="checkpoint_000000")
    assert not repair(trial)
    assert trial.checkpoint.path == str(trial_dir / "checkpoint_000000")
