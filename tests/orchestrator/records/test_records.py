"""A trial's result.json keeps every epoch exactly once when the trial restarts.

Each test drives the logger as Ray's controller does (start, results, end, restart) on a real
Ray `Trial` whose staging copy lives on the driver and whose uploaded copy lives on storage.
"""

import json
import shutil
from pathlib import Path

import pyarrow.fs as pafs
import pytest
import ray
from ray.train._internal.session import _TrainingResult
from ray.train._internal.storage import StorageContext
from ray.tune import Checkpoint
from ray.tune.experiment import Trial
from ray.tune.logger import JsonLoggerCallback

from orchestrator.records import ResultLog, read_trial, with_history
from trainables.checkpoints import RESUME_FILE, WEIGHTS_FILE
from trainables.history import HISTORY_FILE


@pytest.fixture(scope="module", autouse=True)
def ray_session():
    # The driver's staging directory is inside Ray's session directory.
    ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR")
    yield
    ray.shutdown()


def _trial(tmp_path: Path) -> Trial:
    storage = StorageContext(str(tmp_path / "storage"), "sweep", trial_dir_name="t1")
    trial = Trial("finetune", config={"lr": 0.1}, trial_id="t1", storage=storage, stub=True)
    trial.init_local_path()  # as Ray's controller does when it adds the trial
    return trial


def _metrics(epoch: int) -> dict:
    """What the trainable reports for an epoch."""
    return {"epoch": epoch, "val_acc": epoch / 10}


def _result(epoch: int) -> dict:
    """The same as Ray hands it to callbacks."""
    return {**_metrics(epoch), "training_iteration": epoch, "config": {"lr": 0.1}}


def _checkpoint(trial: Trial, epoch: int) -> None:
    """What the worker writes to storage for `epoch`, and Ray then registers."""
    directory = Path(trial.storage.trial_fs_path, f"checkpoint_{epoch:06d}")
    directory.mkdir(parents=True)
    history = [{"metrics": _metrics(e), "timestamp": 1.0 * e} for e in range(1, epoch + 1)]
    (directory / HISTORY_FILE).write_text(json.dumps(history))
    manager = trial.run_metadata.checkpoint_manager
    manager.register_checkpoint(_TrainingResult(Checkpoint(str(directory)), _result(epoch)))


def _upload(trial: Trial) -> None:
    """Ray's periodic sync of the driver's staging copy to storage."""
    shutil.copy(Path(trial.local_path, "result.json"), Path(trial.storage.trial_fs_path, "result.json"))


def _run(logger, trial: Trial, epochs) -> None:
    logger.log_trial_start(trial)
    for epoch in epochs:
        logger.log_trial_result(0, trial, _result(epoch))
        _checkpoint(trial, epoch)


def _epochs(trial: Trial) -> list[int]:
    lines = Path(trial.local_path, "result.json").read_text().splitlines()
    return [json.loads(line)["epoch"] for line in lines]


@pytest.mark.parametrize("logger_class", [JsonLoggerCallback, ResultLog])
def test_a_trial_restarted_by_the_same_driver_keeps_the_epochs_written_since_the_last_upload(tmp_path, logger_class):
    logger, trial = logger_class(), _trial(tmp_path)
    _run(logger, trial, [1, 2])
    _upload(trial)
    _run(logger, trial, [3])  # not yet uploaded when its worker's node goes away
    logger.log_trial_end(trial, failed=True)

    _run(logger, trial, [4])  # restarted from epoch 3's checkpoint
    if logger_class is JsonLoggerCallback:  # Ray's own logger replaces the local file with the stale upload
        assert _epochs(trial) == [1, 2, 4]
    else:
        assert _epochs(trial) == [1, 2, 3, 4]


def test_a_new_driver_rebuilds_the_epochs_it_never_uploaded_from_the_checkpoint(tmp_path):
    first, trial = ResultLog(), _trial(tmp_path)
    _run(first, trial, [1])
    _upload(trial)
    _run(first, trial, [2, 3])  # then the driver's machine is lost, staging copy and all
    shutil.rmtree(trial.local_path)
    with Path(trial.storage.trial_fs_path, "result.json").open("a") as uploaded:
        uploaded.write('{"epoch": 2, "val_')  # and the upload it was making is torn
    trial.init_local_path()

    resumed = ResultLog()
    _run(resumed, trial, [4])
    assert _epochs(trial) == [1, 2, 3, 4]
    lines = [json.loads(line) for line in Path(trial.local_path, "result.json").read_text().splitlines()]
    assert [bool(line.get("restored_from_checkpoint")) for line in lines] == [False, True, True, False]
    assert all(line["config"] == {"lr": 0.1} and line["val_acc"] == line["epoch"] / 10 for line in lines)


def test_epochs_after_the_resumed_checkpoint_are_dropped_because_the_trial_runs_them_again(tmp_path):
    logger, trial = ResultLog(), _trial(tmp_path)
    _run(logger, trial, [1, 2])
    logger.log_trial_result(0, trial, _result(3))  # its checkpoint never got registered
    logger.log_trial_end(trial, failed=True)

    _run(logger, trial, [3, 4])
    assert _epochs(trial) == [1, 2, 3, 4]


def test_a_trial_restored_after_its_final_epoch_reports_it_once(tmp_path):
    logger, trial = ResultLog(), _trial(tmp_path)
    _run(logger, trial, [1, 2, 3])
    logger.log_trial_end(trial, failed=True)

    logger.log_trial_start(trial)
    logger.log_trial_result(0, trial, _result(3))  # the trainable re-reports how it ended
    assert _epochs(trial) == [1, 2, 3]


def test_a_trial_restarting_without_a_checkpoint_starts_its_record_over(tmp_path):
    logger, trial = ResultLog(), _trial(tmp_path)
    logger.log_trial_start(trial)
    logger.log_trial_result(0, trial, _result(1))  # the worker died before the checkpoint was registered
    logger.log_trial_end(trial, failed=True)

    _run(logger, trial, [1, 2])
    assert _epochs(trial) == [1, 2]


def test_with_history_the_checkpoints_values_win_rays_bookkeeping_stays_and_it_stops_at_the_given_epoch():
    records = [{"epoch": e, "val_acc": 0.0, "pid": 7} for e in (1, 3, 5)]  # 3 from an attempt later abandoned
    history = [{"epoch": e, "val_acc": e / 10} for e in range(1, 5)]
    merged = with_history(records, history, through=4, backfill={"restored_from_checkpoint": True})
    assert [(r["epoch"], r["val_acc"], r.get("pid"), "restored_from_checkpoint" in r) for r in merged] == [
        (1, 0.1, 7, False),
        (2, 0.2, None, True),
        (3, 0.3, 7, False),
        (4, 0.4, None, True),
    ]


def test_a_trials_record_is_result_json_filled_from_its_newest_complete_checkpoint(tmp_path):
    trial = _trial(tmp_path)
    trial_dir = Path(trial.storage.trial_fs_path)
    for epoch in (3, 4):
        _checkpoint(trial, epoch)
    (trial_dir / "checkpoint_000004" / RESUME_FILE).write_bytes(b"a resume point")
    (trial_dir / "checkpoint_000005").mkdir()  # half uploaded when its worker died: no history
    (trial_dir / "checkpoint_000005" / RESUME_FILE).write_bytes(b"a resume point")
    (trial_dir / "result.json").write_text(
        "".join(json.dumps({**_result(e), "pid": 7}) + "\n" for e in (1, 3)) + '{"epoch": 4, "val'  # a torn line
    )
    trial_record = read_trial(pafs.LocalFileSystem(), str(trial_dir))
    assert [r["epoch"] for r in trial_record.records] == [1, 2, 3, 4]  # 2 and 4 from the checkpoint's history
    assert [r.get("pid") for r in trial_record.records] == [7, None, 7, None]  # Ray's bookkeeping stays
    assert trial_record.final_checkpoint is None  # no epoch wrote the final weights: it has not ended


def test_the_final_weights_are_in_the_newest_checkpoint_that_holds_them(tmp_path):
    trial = _trial(tmp_path)
    trial_dir = Path(trial.storage.trial_fs_path)
    for epoch in (3, 4):
        _checkpoint(trial, epoch)
    (trial_dir / "checkpoint_000004" / WEIGHTS_FILE).write_bytes(b"weights")
    trial_record = read_trial(pafs.LocalFileSystem(), str(trial_dir))
    assert [r["epoch"] for r in trial_record.records] == [1, 2, 3, 4]
    assert trial_record.final_checkpoint == str(trial_dir / "checkpoint_000004")


def test_a_trial_without_records_or_checkpoints_reads_as_empty(tmp_path):
    assert read_trial(pafs.LocalFileSystem(), str(tmp_path / "missing")).records == []
