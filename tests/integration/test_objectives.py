"""Budgets and several objectives against real Ray Tune, with the data-free trial (seconds a sweep).

A budgeted sweep: no trial over budget runs an epoch, MLflow and the study record each as
`infeasible` with its costs, and the record's invariants hold. A two-objective sweep: the front that
MLflow tags is exactly the non-dominated completed trials by their final values (computed here
from MLflow's own metrics), the parent, the study and the report agree.
"""

from __future__ import annotations

import json
import textwrap

import mlflow
import optuna
import pytest
import ray
import ray.cloudpickle
from mlflow import MlflowClient

from benchmarks import synthetic
from orchestrator.run import check_sweep, report_sweep, run_sweep
from orchestrator.search import epoch_values, open_study_storage
from orchestrator.tracking import child_runs
from tests.integration.test_contract import ray_records

pytestmark = pytest.mark.contract
ray.cloudpickle.register_pickle_by_value(synthetic)

SPEC = textwrap.dedent("""\
    experiment: {experiment}
    weights: {{source: none}}
    data: {{image_size: 32}}
    search: {{trials: {trials}, concurrent: 2, seed: 1}}
    early_stopping: {{scheduler: asha, max_epochs: 4, grace_period: 1, reduction_factor: 2}}
    space:
      backbone: {{type: categorical, choices: [test_resnet, mobilenetv3_small_050, test_vit, test_convnext]}}
      lr: {{type: float, low: 1.0e-3, high: 3.0e-3, log: true}}
      dropout: {{type: float, low: 0.0, high: 0.3}}
    storage: ./runs
""")


@pytest.fixture(scope="module", autouse=True)
def _ray(local_ray):
    yield


def sweep(tmp_path, monkeypatch, name: str, extra: str, trials: int = 12):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(experiment=name, trials=trials) + extra)
    return spec, run_sweep(spec, trainable=synthetic.synthetic_trial)


def children(summary) -> dict[str, mlflow.entities.Run]:
    client = MlflowClient(summary.tracking_uri)
    return {run.data.tags["ray.trial_id"]: run for run in child_runs(client, client.get_run(summary.parent_run_id))}


def study_trials(summary) -> dict[str, optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name=summary.sweep_id, storage=open_study_storage(summary.optuna_storage))
    return {t.user_attrs["ray.trial_id"]: t for t in study.trials}


def test_a_config_over_budget_never_trains_and_is_recorded_infeasible(tmp_path, monkeypatch):
    # params excludes mobilenetv3_small_050 (573k), latency test_resnet (4.1 ms) and test_vit (1.44 ms)
    _, summary = sweep(tmp_path, monkeypatch, "budget", "constraints: {params: {max: 5.0e5}, latency_ms: {max: 1.3}}\n")
    assert summary.audit is not None and summary.audit.problems == []
    records, runs, study = ray_records(tmp_path, summary), children(summary), study_trials(summary)
    assert set(records) == set(runs) == set(study)
    infeasible = {t for t, lines in records.items() if lines[-1].get("infeasible")}
    assert infeasible and infeasible != set(records)  # both kinds ran
    for trial_id, lines in records.items():
        config = json.loads((tmp_path / "runs" / "budget" / summary.sweep_id / trial_id / "params.json").read_text())
        cost = synthetic.costs(config)
        over = cost["total_params"] > 5.0e5 or cost["latency_ms"] > 1.3
        run, optuna_trial = runs[trial_id], study[trial_id]
        if over:  # not one epoch: its only record holds its costs
            assert [line["epoch"] for line in lines] == [0], trial_id
            assert run.data.tags["outcome"] == "infeasible" and run.info.status == "FINISHED"
            assert run.data.tags["stopped_at_epoch"] == "0"
            assert run.data.metrics["total_params"] == cost["total_params"]
            assert "val_acc" not in run.data.metrics
            assert optuna_trial.state.name == "PRUNED" and optuna_trial.intermediate_values == {}
            assert max(optuna_trial.constraints.values()) > 0
        else:
            assert trial_id not in infeasible and lines[0]["epoch"] == 1
            assert run.data.tags["outcome"] in ("completed", "pruned")
            assert max(optuna_trial.constraints.values()) <= 0
        assert optuna_trial.user_attrs["costs"]["total_params"] == cost["total_params"]
    assert summary.outcomes["infeasible"] == len(infeasible)
    assert summary.best_trial_id not in infeasible
    assert runs[summary.best_trial_id].data.params["backbone"] == "test_convnext"  # the only one within both


def test_two_objectives_give_a_non_dominated_front_that_mlflow_the_study_and_the_report_agree_on(tmp_path, monkeypatch):
    spec, summary = sweep(
        tmp_path, monkeypatch, "front", "objective: [{metric: val_acc, mode: max}, {metric: latency_ms, mode: min}]\n"
    )
    assert summary.audit is not None and summary.audit.problems == []
    runs, study = children(summary), study_trials(summary)
    finals = {
        t: (run.data.metrics["val_acc"], run.data.metrics["latency_ms"])
        for t, run in runs.items()
        if run.data.tags["outcome"] == "completed"
    }

    def dominated(a):
        return any(b[0] >= a[0] and b[1] <= a[1] and b != a for b in finals.values())

    front = {t for t, values in finals.items() if not dominated(values)}
    assert len(front) >= 2
    assert {t for t, run in runs.items() if run.data.tags["pareto"] == "true"} == front
    assert set(summary.front) == front
    parent = MlflowClient(summary.tracking_uri).get_run(summary.parent_run_id)
    assert set(parent.data.tags["pareto.trial_ids"].split(",")) == front
    assert summary.best_trial_id == max(front, key=lambda t: finals[t][0])
    for trial_id, optuna_trial in study.items():
        outcome = runs[trial_id].data.tags["outcome"]
        assert optuna_trial.state.name == {"completed": "COMPLETE", "pruned": "PRUNED"}[outcome]
        history = {
            m.step: m.value
            for m in MlflowClient(summary.tracking_uri).get_metric_history(runs[trial_id].info.run_id, "val_acc")
        }
        assert {e: v[0] for e, v in epoch_values(optuna_trial).items()} == pytest.approx(history)
        if outcome == "completed":
            assert optuna_trial.values == pytest.approx(list(finals[trial_id]))

    report = report_sweep(spec)  # the synthetic trial leaves the report to `orchestrator report`
    assert {row["trial_id"] for row in json.loads(json.dumps(report_data_front(report)))} == front
    assert "pareto_front.png" in report.figures
    assert check_sweep(spec).problems == []  # the report's front checked against MLflow's


def report_data_front(report):
    from orchestrator.insights.report import report_data

    return report_data(report)["pareto"]["front"]
