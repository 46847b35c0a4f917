"""The Model Registry: one version per registered run, the champion alias on the newest best, nothing printed."""

import pytest
import torch
from mlflow import MlflowClient
from torch import nn

from orchestrator.tracking.registry import ALIAS, register_best


def _tiny_classifier() -> nn.Module:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2)).eval()


def _register(client, experiment_id, run_id, *, champion=True):
    return register_best(
        client,
        experiment_id=experiment_id,
        run_id=run_id,
        model=_tiny_classifier(),
        input_example=torch.rand(2, 3, 8, 8).numpy(),
        class_names=["a", "b"],
        name="tiny",
        description="a test",
        tags={"val_acc": "0.5"},
        champion=champion,
    )


@pytest.mark.integration  # torch.export of three models: about 15 s
def test_versions_are_registered_once_per_run_with_the_alias_on_the_champion_and_nothing_printed(tmp_path, capfd):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment_id = client.create_experiment("registry", artifact_location=str(tmp_path / "artifacts"))
    first, second = (client.create_run(experiment_id).info.run_id for _ in range(2))
    for run_id in (first, second):
        client.set_terminated(run_id)
    capfd.readouterr()

    one = _register(client, experiment_id, first)
    again = _register(client, experiment_id, first)  # a driver that died after registering, run again
    two = _register(client, experiment_id, second, champion=False)

    assert (one.version, again.version, two.version) == ("1", "1", "2")
    assert str(client.get_model_version_by_alias("tiny", ALIAS).version) == "1"
    version = client.get_model_version("tiny", "2")
    assert version.run_id == second and version.description == "a test" and version.tags == {"val_acc": "0.5"}
    assert client.get_run(first).info.status == "FINISHED"  # logging the model did not reopen the run
    assert "egistered model" not in capfd.readouterr().err  # MLflow's "Successfully registered ..." lines
