"""Live MLflow logging: a trial's run opens when it starts and closes when it ends; an outage delays, never loses."""

import socket
from types import SimpleNamespace

from mlflow import MlflowClient

from orchestrator.tracking import MLflowLiveLogger, SweepRuns


def _dead_uri() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def test_results_wait_through_an_outage_and_arrive_afterwards(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    runs = SweepRuns(store, "outage", "sweep-1", max_epochs=3, metric="val_acc")
    runs.start_parent(spec_text="experiment: outage", spec_hash="h", tags={})

    runs.tracking_uri = _dead_uri()  # MLflow goes down
    logger = MLflowLiveLogger(runs, flush_every_s=0.0, retry_every_s=0.0)
    trial = _trial("t1", {"lr": 0.1, "backbone": "test_resnet"})
    logger.on_trial_start(0, [], trial)  # must not raise
    for epoch in (1, 2):
        trial.last_result = {"epoch": epoch, "val_acc": 0.5 + epoch / 10}
        logger.on_trial_result(0, [], trial, trial.last_result)
    logger.on_step_end(0, [])
    assert [r["epoch"] for r in logger._pending["t1"]] == [1, 2]  # kept, not lost
    logger.on_trial_complete(0, [], trial)  # ends during the outage
    assert "t1" in logger._ending

    runs.tracking_uri = store  # MLflow is back
    logger.flush()
    assert logger._pending == {} and logger._ending == {}
    client = MlflowClient(store)
    (child,) = client.search_runs([runs.experiment_id], "tags.`ray.trial_id` = 't1'")
    assert child.data.params == {"lr": "0.1", "backbone": "test_resnet"}
    assert child.info.run_name == "test_resnet-t1"  # what the runs table shows: the backbone, then the trial
    assert [(m.step, round(m.value, 3)) for m in client.get_metric_history(child.info.run_id, "val_acc")] == [
        (1, 0.6),
        (2, 0.7),
    ]


def test_a_replay_fills_epochs_missing_before_the_ones_already_logged_and_logs_each_once(tmp_path):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    live = SweepRuns(store, "gaps", "sweep-1", max_epochs=4, metric="val_acc")
    live.start_parent(spec_text="experiment: gaps", spec_hash="h", tags={})
    live.child("t1", {})
    live.log_epochs("t1", [{"epoch": 3, "val_acc": 0.3}, {"epoch": 4, "val_acc": 0.4}])  # 1 and 2 died with a driver

    replay = SweepRuns(store, "gaps", "sweep-1", max_epochs=4, metric="val_acc")  # the next driver, from Ray's records
    replay.start_parent(spec_text="experiment: gaps", spec_hash="h", tags={})
    replay.child("t1", {})
    for _ in range(2):
        replay.log_epochs("t1", [{"epoch": e, "val_acc": e / 10} for e in range(1, 5)])
    history = MlflowClient(store).get_metric_history(live.child("t1", {}), "val_acc")
    assert sorted((m.step, m.value) for m in history) == [(1, 0.1), (2, 0.2), (3, 0.3), (4, 0.4)]


def _trial(trial_id: str, config: dict):
    """What the logger reads of a Ray Trial."""
    return SimpleNamespace(trial_id=trial_id, config=config, last_result={}, error_file=None)


def test_a_trials_run_closes_as_it_ends_with_its_outcome_and_reopens_when_it_resumes(tmp_path):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    runs = SweepRuns(store, "live", "sweep-1", max_epochs=3, metric="val_acc")
    runs.start_parent(spec_text="experiment: live", spec_hash="h", tags={})
    logger = MLflowLiveLogger(runs)
    client = MlflowClient(store)
    pruned, running = _trial("p", {}), _trial("r", {})
    for trial in (pruned, running):
        logger.on_trial_start(0, [], trial)
    pruned.last_result = {"epoch": 2, "val_acc": 0.4}
    logger.on_trial_result(0, [], pruned, {"epoch": 1, "val_acc": 0.6})
    logger.on_trial_complete(0, [], pruned)  # stopped by ASHA at epoch 2; Ray hands that result to no one else
    run = client.get_run(runs.child("p", {}))
    assert run.info.status == "FINISHED" and run.data.tags["outcome"] == "pruned"
    assert run.data.tags["stopped_at_epoch"] == "2" and run.info.end_time is not None
    assert run.data.metrics["best_val_acc"] == 0.6
    assert client.get_run(runs.child("r", {})).info.status == "RUNNING"  # the other trial runs on

    logger.on_trial_restore(0, [], pruned)  # a resumed sweep runs it again
    assert client.get_run(runs.child("p", {})).info.status == "RUNNING"


def test_metrics_read_back_by_pandas_keep_their_numpy_integers():
    """`orchestrator sync` replays records read by pandas, whose integers are numpy's."""
    import numpy as np

    from orchestrator.tracking import metrics_of

    record = {"val_acc": np.float64(0.5), "trainable_params": np.int64(1200), "done": np.bool_(True), "x": "text"}
    record["nan"] = float("nan")
    logged = {m.key: m.value for m in metrics_of(record, step=2, timestamp_ms=0)}
    assert logged == {"val_acc": 0.5, "trainable_params": 1200.0}


def test_a_password_in_the_tracking_uri_is_not_pickled_into_tunes_state():
    import pickle

    from orchestrator.tracking import SweepRuns

    uri = "http://alice:hunter2@127.0.0.1:5000"
    runs = SweepRuns(uri, "exp", "sweep-1", 3, "val_acc")
    saved = pickle.dumps(runs)
    assert b"hunter2" not in saved
    assert pickle.loads(saved).tracking_uri == uri  # the resuming driver, knowing the URI, restores it


def test_a_trial_costs_one_call_to_open_two_to_close_and_its_replay_none(tmp_path, monkeypatch):
    """What a sweep of many short trials pays on the driver's loop, per trial; the record stays whole."""
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    runs = SweepRuns(store, "calls", "sweep-1", max_epochs=2, metric="val_acc")
    runs.start_parent(spec_text="experiment: calls", spec_hash="h", tags={})
    calls: list[str] = []
    for name in ("search_runs", "create_run", "log_batch", "set_terminated", "get_run", "update_run"):
        real = getattr(MlflowClient, name)
        monkeypatch.setattr(
            MlflowClient, name, lambda self, *a, _n=name, _f=real, **k: calls.append(_n) or _f(self, *a, **k)
        )
    logger = MLflowLiveLogger(runs, flush_every_s=3600)  # results wait for the trial's end, as short trials' do
    trials = [_trial(f"t{i}", {"lr": 0.1 * i}) for i in range(3)]
    for trial in trials:
        logger.on_trial_start(0, [], trial)
    assert calls == ["search_runs", "create_run", "create_run", "create_run"]  # the children are listed once

    records = {}
    for trial in trials:
        records[trial.trial_id] = [{"epoch": e, "val_acc": e / 10, "timestamp": 1.0 + e} for e in (1, 2)]
        for result in records[trial.trial_id]:
            trial.last_result = result
            logger.on_trial_result(0, [], trial, result)
        calls.clear()
        logger.on_trial_complete(0, [], trial)
        assert calls == ["log_batch", "set_terminated"]  # params, both epochs, outcome: one batch

    calls.clear()
    for trial in trials:  # the end-of-sweep replay, from Ray's records, a moment after the live closing
        ended = runs.client.get_run(runs.child(trial.trial_id, {})).info.end_time
        runs.finish_child(
            trial.trial_id, "completed", last_epoch=2, end_time_ms=ended + 20, results=records[trial.trial_id]
        )
    assert [c for c in calls if c != "get_run"] == []

    client = MlflowClient(store)
    for trial in trials:
        run = client.get_run(runs.child(trial.trial_id, {}))
        assert run.info.status == "FINISHED" and run.data.tags["outcome"] == "completed"
        assert run.data.params == {"lr": str(trial.config["lr"])}
        assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "val_acc")] == [
            (1, 0.1),
            (2, 0.2),
        ]


def test_a_run_opened_by_an_earlier_driver_gets_its_missing_params_and_is_closed_once(tmp_path):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = SweepRuns(store, "again", "sweep-1", max_epochs=2, metric="val_acc")
    first.start_parent(spec_text="experiment: again", spec_hash="h", tags={})
    run_id = first.child("t1", {"lr": 0.1})  # the driver died before the params went out

    second = SweepRuns(store, "again", "sweep-1", max_epochs=2, metric="val_acc")
    second.start_parent(spec_text="experiment: again", spec_hash="h", tags={})
    assert second.child("t1", {"lr": 0.1}) == run_id
    second.finish_child("t1", "pruned", last_epoch=1, end_time_ms=5_000, results=[{"epoch": 1, "val_acc": 0.3}])
    run = MlflowClient(store).get_run(run_id)
    assert run.data.params == {"lr": "0.1"} and run.info.status == "FINISHED" and run.info.end_time == 5_000
    assert run.data.tags["outcome"] == "pruned" and run.data.metrics["best_val_acc"] == 0.3
