"""The record against real Ray Tune, with a trial that needs no data or torch (seconds per sweep).

Each sweep runs the whole driver (Tune with ASHA or without a scheduler, the fidelity bridge,
live MLflow logging, the ledger, the end-of-sweep pass and `orchestrator check`), and the tests
then join Ray's own result files, the Optuna study and MLflow trial by trial, deriving what each
should hold from Ray's records alone. A first test pins the order in which Tune calls a searcher,
which the fidelity bridge depends on: a Ray upgrade that changes it fails here first.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import optuna
import pytest
import ray
import ray.cloudpickle
from mlflow import MlflowClient
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import Searcher

from benchmarks import synthetic
from orchestrator.run import run_sweep
from orchestrator.search import open_study_storage
from orchestrator.tracking import child_runs

pytestmark = pytest.mark.contract
ray.cloudpickle.register_pickle_by_value(synthetic)  # workers may not have the checkout on their path


@pytest.fixture(scope="module", autouse=True)
def _ray(local_ray):
    yield


class CallLog(Searcher):
    """A searcher that records every call Tune makes to it."""

    def __init__(self):
        super().__init__(metric="val_acc", mode="max")
        self.calls: list[tuple[str, str, int | None]] = []
        self.n = 0

    def suggest(self, trial_id):
        self.n += 1
        return {"lr": [3e-3, 1e-4, 2e-3, 5e-4][(self.n - 1) % 4], "max_epochs": 4} if self.n <= 4 else None

    def on_trial_result(self, trial_id, result):
        self.calls.append(("result", trial_id, result["epoch"]))

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.calls.append(("complete", trial_id, (result or {}).get("epoch")))


def test_tune_gives_the_result_that_stops_or_ends_a_trial_only_to_on_trial_complete(tmp_path):
    searcher = CallLog()
    tune.Tuner(
        synthetic.synthetic_trial,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=ASHAScheduler(metric="val_acc", mode="max", time_attr="epoch", max_t=4, grace_period=1),
            num_samples=4,
            max_concurrent_trials=2,
        ),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
    ).fit()
    trials = {trial_id for _, trial_id, _ in searcher.calls}
    assert len(trials) == 4
    for trial_id in trials:
        results = [epoch for kind, t, epoch in searcher.calls if t == trial_id and kind == "result"]
        (last,) = [epoch for kind, t, epoch in searcher.calls if t == trial_id and kind == "complete"]
        assert results == list(range(1, last)), (trial_id, results, last)  # every epoch before the last one
    assert any(epoch < 4 for kind, _, epoch in searcher.calls if kind == "complete")  # ASHA stopped some


SPEC = textwrap.dedent("""\
    experiment: {experiment}
    weights: {{source: none}}
    search: {{trials: {trials}, concurrent: 2, seed: {seed}}}
    early_stopping: {early_stopping}
    space:
      lr: {{type: float, low: 1.0e-4, high: 3.0e-3, log: true}}
      dropout: {{type: float, low: 0.0, high: 0.4}}
    storage: ./runs
""")
SWEEPS = {
    "asha_grace1_rf2_max4": "{scheduler: asha, max_epochs: 4, grace_period: 1, reduction_factor: 2}",
    "asha_grace2_rf3_max6": "{scheduler: asha, max_epochs: 6, grace_period: 2, reduction_factor: 3}",
    "asha_grace1_rf3_max9": "{scheduler: asha, max_epochs: 9, grace_period: 1, reduction_factor: 3}",
    "no_scheduler_max3": "{scheduler: none, max_epochs: 3}",
}


def sweep(tmp_path: Path, monkeypatch, name: str, early_stopping: str, trials: int = 8, **kwargs):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(experiment=name, trials=trials, seed=0, early_stopping=early_stopping))
    return run_sweep(spec, trainable=synthetic.synthetic_trial, **kwargs)


def ray_records(tmp_path: Path, summary) -> dict[str, list[dict]]:
    """Each trial's result.json, read directly."""
    folder = tmp_path / "runs" / summary.experiment / summary.sweep_id
    return {
        path.parent.name: [json.loads(line) for line in path.read_text().splitlines()]
        for path in folder.glob("*/result.json")
    }


def rungs(early_stopping: str) -> set[int]:
    values = dict(part.split(": ") for part in early_stopping.strip("{}").split(", "))
    if values["scheduler"] == "none":
        return set()
    grace, factor, top = int(values["grace_period"]), int(values["reduction_factor"]), int(values["max_epochs"])
    return {grace * factor**k for k in range(10) if grace * factor**k < top}


@pytest.mark.parametrize("name", list(SWEEPS))
def test_ray_optuna_and_mlflow_hold_the_same_trials_and_epochs(tmp_path, monkeypatch, name):
    early_stopping = SWEEPS[name]
    max_epochs = int(early_stopping.split("max_epochs: ")[1].split(",")[0].rstrip("}"))
    summary = sweep(tmp_path, monkeypatch, name.replace("_", "-"), early_stopping)
    assert summary.audit is not None and summary.audit.problems == []

    records = ray_records(tmp_path, summary)
    assert len(records) == 8
    client = MlflowClient(summary.tracking_uri)
    children = {
        run.data.tags["ray.trial_id"]: run
        for run in client.search_runs(
            [client.get_experiment_by_name(summary.experiment).experiment_id],
            f"tags.`mlflow.parentRunId` = '{summary.parent_run_id}'",
        )
    }
    study = optuna.load_study(study_name=summary.sweep_id, storage=open_study_storage(summary.optuna_storage))
    by_ray_id = {t.user_attrs["ray.trial_id"]: t for t in study.trials}
    assert set(children) == set(records) == set(by_ray_id)
    for trial_id, lines in records.items():
        epochs = [line["epoch"] for line in lines]
        last = epochs[-1]
        assert epochs == list(range(1, last + 1)), (trial_id, epochs)
        assert last == max_epochs or last in rungs(early_stopping), (trial_id, last)  # ASHA stops only at rungs
        child, optuna_trial = children[trial_id], by_ray_id[trial_id]
        expected = "completed" if last == max_epochs else "pruned"
        assert child.data.tags["outcome"] == expected and child.info.status == "FINISHED"
        assert child.data.tags["optuna.trial_number"] == str(optuna_trial.number)
        assert optuna_trial.user_attrs["mlflow.run_id"] == child.info.run_id
        assert optuna_trial.state.name == {"completed": "COMPLETE", "pruned": "PRUNED"}[expected]
        values = {line["epoch"]: line["val_acc"] for line in lines}
        assert optuna_trial.intermediate_values == pytest.approx(values)  # the last epoch included
        history = {m.step: m.value for m in client.get_metric_history(child.info.run_id, "val_acc")}
        assert history == pytest.approx(values)
        if expected == "completed":
            assert optuna_trial.value == pytest.approx(values[max_epochs])
        assert child.info.end_time >= lines[-1]["timestamp"] * 1000 - 1000  # closed when its trial ended...
        assert child.info.end_time - lines[-1]["timestamp"] * 1000 < 5_000  # ...not when the sweep did
    completed = {t: lines[-1]["val_acc"] for t, lines in records.items() if lines[-1]["epoch"] == max_epochs}
    assert summary.best_trial_id == max(completed, key=completed.get)


def test_the_live_path_alone_keeps_the_record(tmp_path, monkeypatch):
    """With the end-of-sweep replay off, what live logging and the ledger wrote must already agree."""
    summary = sweep(tmp_path, monkeypatch, "live-only", SWEEPS["asha_grace1_rf2_max4"], replay=False)
    assert summary.audit is not None and summary.audit.problems == []
    assert sum(summary.outcomes.values()) == 8


def test_a_finished_sweep_run_again_records_nothing_twice(tmp_path, monkeypatch):
    first = sweep(tmp_path, monkeypatch, "again", SWEEPS["asha_grace1_rf2_max4"], trials=4)
    again = sweep(tmp_path, monkeypatch, "again", SWEEPS["asha_grace1_rf2_max4"], trials=4)
    assert again.resumed and again.sweep_id == first.sweep_id and again.parent_run_id == first.parent_run_id
    assert again.audit is not None and again.audit.problems == []
    assert again.outcomes == first.outcomes and again.best_trial_id == first.best_trial_id
    assert os.path.exists(tmp_path / "runs" / "again" / "sweep.json")


def test_fresh_starts_a_new_sweep_beside_the_old_one(tmp_path, monkeypatch):
    first = sweep(tmp_path, monkeypatch, "fresh", SWEEPS["no_scheduler_max3"], trials=3)
    fresh = sweep(tmp_path, monkeypatch, "fresh", SWEEPS["no_scheduler_max3"], trials=3, fresh=True)
    assert not fresh.resumed and fresh.sweep_id != first.sweep_id and fresh.parent_run_id != first.parent_run_id
    assert fresh.audit.problems == []
    client = MlflowClient(first.tracking_uri)
    for summary in (first, fresh):
        parent = client.get_run(summary.parent_run_id)
        assert parent.info.status == "FINISHED" and len(child_runs(client, parent)) == 3
