"""A real sweep of the fine-tuning trial under a parameter budget that excludes three of the demo's
four backbones: no over-budget config trains an epoch (its result.json holds only its costs, and
no checkpoint), the record holds, and the registered model fits the budget."""

from __future__ import annotations

import json
import textwrap

import mlflow
import pytest
import ray
from mlflow import MlflowClient

from orchestrator.run import run_sweep
from orchestrator.tracking import child_runs
from trainables.budgets import static_costs

pytestmark = pytest.mark.integration

BUDGET = 2.5e5  # test_convnext has 207,453 parameters for 3 classes; the others 306k to 573k
SPEC = textwrap.dedent(f"""\
    experiment: budget
    data: {{classes: [5, 6, 7], train_per_class: 8, val_per_class: 20, image_size: 32}}
    weights: {{source: none}}
    constraints: {{params: {{max: {BUDGET}}}}}
    search: {{trials: 6, concurrent: 2, seed: 3, baselines: [{{backbone: test_convnext, lr: 3.0e-3}}]}}
    early_stopping: {{max_epochs: 2, grace_period: 1, reduction_factor: 2}}
    space:
      backbone: {{type: categorical, choices: [test_resnet, mobilenetv3_small_050, test_vit, test_convnext]}}
      unfreeze: full
      lr: {{type: float, low: 1.0e-3, high: 1.0e-2, log: true}}
      batch_size: 8
    mlflow: {{register_best_as: budget-best}}
    storage: ./runs
""")


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    ray.shutdown()
    yield
    ray.shutdown()


def test_a_parameter_budget_keeps_over_budget_backbones_from_training(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "spec.yaml").write_text(SPEC)
    summary = run_sweep(tmp_path / "spec.yaml")
    assert summary.audit is not None and summary.audit.problems == []

    client = MlflowClient(summary.tracking_uri)
    runs = child_runs(client, client.get_run(summary.parent_run_id))
    assert len(runs) == 6
    folder = tmp_path / "runs" / "budget" / summary.sweep_id
    infeasible = 0
    for run in runs:
        backbone, trial_id = run.data.params["backbone"], run.data.tags["ray.trial_id"]
        params = static_costs(backbone, 3, 32)["total_params"]
        lines = [json.loads(line) for line in (folder / trial_id / "result.json").read_text().splitlines()]
        assert run.data.metrics["total_params"] == params
        if params > BUDGET:
            infeasible += 1
            assert [line["epoch"] for line in lines] == [0] and lines[0]["infeasible"] == 1
            assert not list((folder / trial_id).glob("checkpoint_*"))  # nothing trained, nothing saved
            assert run.data.tags["outcome"] == "infeasible" and "train_loss" not in run.data.metrics
        else:
            assert backbone == "test_convnext" and lines[0]["epoch"] == 1
    assert infeasible == summary.outcomes.get("infeasible", 0) > 0
    best = client.get_run(summary.best_run_id)
    assert best.data.params["backbone"] == "test_convnext"
    version = client.get_model_version_by_alias("budget-best", "champion")
    assert version.run_id == summary.best_run_id
    assert mlflow.pytorch.load_model("models:/budget-best@champion") is not None
