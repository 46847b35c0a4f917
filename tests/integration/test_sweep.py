"""A real sweep end to end: Ray (local cluster) + Optuna (SQLite) + ASHA + MLflow (SQLite).

One sweep runs once for the session (conftest.py); the tests here only read what it left behind, through
MLflow's and Optuna's own clients (resuming, syncing and --fresh are tested on sweeps of their own:
test_contract.py, test_kills.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import optuna
import pytest
import ray
import torch
from mlflow import MlflowClient

from orchestrator.cli import main
from orchestrator.errors import SpecError
from orchestrator.run import run_sweep
from orchestrator.search import open_study_storage
from tests.integration.conftest import MAX_EPOCHS, SPEC, TRIALS
from trainables.data import load_digits_task
from trainables.models import create_backbone
from trainables.transforms import data_config, model_input_transform

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sweep(small_sweep):
    """The session's small sweep (conftest.py); these tests resume it from its directory."""
    workdir, summary = small_sweep
    previous = Path.cwd()
    os.chdir(workdir)
    try:
        yield workdir, summary
    finally:
        os.chdir(previous)
        ray.shutdown()


@pytest.fixture(scope="module")
def client(sweep):
    workdir, summary = sweep
    return MlflowClient(summary.tracking_uri)


def _children(client, parent_run_id):
    exp = client.get_experiment_by_name("it")
    return client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_run_id}'")


def test_one_parent_run_with_the_spec_and_one_child_per_trial(sweep, client):
    _, summary = sweep
    exp = client.get_experiment_by_name("it")
    parents = client.search_runs([exp.experiment_id], "tags.`orchestrator.role` = 'sweep'")
    assert [p.info.run_id for p in parents] == [summary.parent_run_id]
    assert parents[0].info.status == "FINISHED"
    spec_text = mlflow.artifacts.load_text(f"runs:/{summary.parent_run_id}/spec.yaml")
    assert "experiment: it" in spec_text
    children = _children(client, summary.parent_run_id)
    assert len(children) == TRIALS
    assert len({c.data.tags["ray.trial_id"] for c in children}) == TRIALS
    assert all(c.data.tags["orchestrator.role"] == "trial" for c in children)


def test_children_hold_params_outcomes_and_gap_free_epoch_histories(sweep, client):
    _, summary = sweep
    outcomes = {}
    for child in _children(client, summary.parent_run_id):
        tags, params = child.data.tags, child.data.params
        assert {"backbone", "transfer_layers", "unfreeze", "lr", "batch_size", "max_epochs"} <= set(params)
        outcome = tags["outcome"]
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val_acc")]
        stopped = int(tags["stopped_at_epoch"])
        assert sorted(steps) == list(range(1, stopped + 1)), "one val_acc per epoch, no gaps, no repeats"
        assert (stopped == MAX_EPOCHS) == (outcome == "completed")
        assert child.info.status == ("FINISHED" if outcome in ("completed", "pruned") else "FAILED")
        for key in ("val_loss", "val_f1", "train_loss", "trainable_params", "total_params", "epoch_time_s"):
            assert key in child.data.metrics
    assert outcomes.get("pruned", 0) >= 1, outcomes
    assert outcomes.get("completed", 0) >= 1, outcomes
    assert outcomes == summary.outcomes


def test_optuna_states_match_outcome_tags(sweep, client):
    _, summary = sweep
    study = optuna.load_study(study_name=summary.sweep_id, storage=open_study_storage(summary.optuna_storage))
    states = [t.state.name for t in study.get_trials()]
    expected = {"completed": "COMPLETE", "pruned": "PRUNED", "errored": "FAIL", "diverged": "FAIL"}
    by_tag = sorted(expected[c.data.tags["outcome"]] for c in _children(client, summary.parent_run_id))
    assert sorted(states) == by_tag
    # the baseline was evaluated first, and ASHA let it run to max_epochs as a reference
    assert study.get_trials()[0].params["transfer_layers"] == 0.0
    (baseline,) = [c for c in _children(client, summary.parent_run_id) if c.data.params.get("baseline") == "0"]
    assert baseline.data.tags["outcome"] == "completed"


def test_registered_model_is_the_best_child_and_classifies_target_images(sweep, client):
    _, summary = sweep
    children = {c.info.run_id: c for c in _children(client, summary.parent_run_id)}
    completed = {rid: c.data.metrics["val_acc"] for rid, c in children.items() if c.data.tags["outcome"] == "completed"}
    assert summary.best_run_id == max(completed, key=completed.get)
    version = client.get_model_version("it-best", summary.model_version)
    assert version.run_id == summary.best_run_id

    uri = f"models:/it-best/{summary.model_version}"
    model = mlflow.pytorch.load_model(uri)
    target = load_digits_task([5, 6, 7], train_per_class=8, val_per_class=20, seed=0)
    # the logged model takes images in [0, 1] at its input size and normalises them itself
    backbone = children[summary.best_run_id].data.params["backbone"]
    to_input = model_input_transform(data_config(create_backbone(backbone, 3), 32))
    images = torch.stack([to_input(target.val.image(i)) for i in range(len(target.val))])
    with torch.no_grad():
        predictions = model(images).argmax(dim=1).numpy()
    accuracy = float((predictions == target.val.labels).mean())
    assert mlflow.models.get_model_info(uri).metadata["class_names"] == ["5", "6", "7"]
    assert accuracy == pytest.approx(completed[summary.best_run_id], abs=1e-6)
    with torch.no_grad():  # any image size: the model resizes to the size it trained at
        assert tuple(model(torch.rand(2, 3, 64, 48)).shape) == (2, 3)
    assert client.get_model_version_by_alias("it-best", "champion").version == version.version
    assert "any H and W" in version.description and version.tags["backbone"] == backbone
    assert version.tags["sweep_id"] == summary.sweep_id and float(version.tags["val_acc"]) == pytest.approx(
        completed[summary.best_run_id], abs=1e-5
    )


def test_changed_spec_with_the_same_experiment_is_refused(sweep, capsys):
    workdir, _ = sweep
    changed = workdir / "changed.yaml"
    changed.write_text(SPEC.replace("seed: 0", "seed: 1"))
    with pytest.raises(SpecError, match="--fresh"):
        run_sweep(changed)
    assert main(["sweep", str(changed)]) == 2
    assert "different spec" in capsys.readouterr().err


def test_list_shows_the_sweep_finished_with_its_trials_best_value_and_compute(sweep, client, capsys):
    workdir, summary = sweep
    assert main(["list", str(workdir / "spec.yaml")]) == 0
    (row,) = [line for line in capsys.readouterr().out.splitlines() if summary.sweep_id in line]
    cells = row.split()
    assert cells[:5] == ["it", summary.sweep_id, "*", "finished", f"{TRIALS}/{TRIALS}"]
    assert cells[5] == "val_acc" and float(cells[6]) == pytest.approx(summary.best_metrics["val_acc"], abs=5e-5)
    histories = [client.get_metric_history(c.info.run_id, "val_acc") for c in _children(client, summary.parent_run_id)]
    assert int(cells[7]) == sum(len(h) for h in histories)  # compute spent: every epoch of every trial
