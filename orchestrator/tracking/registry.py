"""The best trial's model in MLflow: logged in its run, registered, described, aliased.

Idempotent at every step, so a driver killed half-way and run again ends with one logged model
and one registered version per sweep: a model already logged from the run is reused, and so is
a version already registered from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec

from orchestrator import faults

ALIAS = "champion"  # the registered model's alias for the newest sweep's best
MODEL_NAME = "model"  # the logged model's name in the best trial's run


@dataclass(frozen=True)
class Registered:
    model_uri: str
    version: str | None  # None when the spec registers nothing


def _any_size_signature(classes: int) -> ModelSignature:
    """Batch, height and width free (-1): MLflow exports those dimensions as dynamic, so the model takes
    images of any size where the architecture allows (ImageClassifier resizes to its training size)."""
    images = TensorSpec(np.dtype(np.float32), (-1, 3, -1, -1))
    logits = TensorSpec(np.dtype(np.float32), (-1, classes))
    return ModelSignature(inputs=Schema([images]), outputs=Schema([logits]))


def logged_model_uri(client: MlflowClient, experiment_id: str, run_id: str) -> str | None:
    """The model this run already logged, if any."""
    found = mlflow.search_logged_models(
        experiment_ids=[experiment_id],
        filter_string=f"source_run_id = '{run_id}' AND name = '{MODEL_NAME}'",
        output_format="list",
    )
    return found[0].model_uri if found else None


def register_best(
    client: MlflowClient,
    *,
    experiment_id: str,
    run_id: str,
    model,
    input_example,
    class_names: list[str],
    name: str | None,
    description: str,
    tags: dict[str, str],
    champion: bool = True,
) -> Registered:
    """Log `model` (images in [0, 1] -> logits) in the best run and, if `name` is set, register it
    with `description` and `tags` and (if `champion`) point the `champion` alias at it. A sweep with
    several objectives registers every trial on its Pareto front, the champion being one of them."""
    mlflow.set_tracking_uri(client.tracking_uri)
    model_uri = logged_model_uri(client, experiment_id, run_id)
    if model_uri is None:
        run = client.get_run(run_id).info
        with mlflow.start_run(run_id=run_id):
            info = mlflow.pytorch.log_model(
                model,
                name=MODEL_NAME,
                input_example=input_example,
                signature=_any_size_signature(len(class_names)),
                metadata={"class_names": class_names},
                serialization_format="pt2",  # torch.export: loading runs no pickle
            )
        client.set_terminated(run_id, run.status, end_time=run.end_time)  # start_run reopened it
        model_uri = info.model_uri
    faults.reach("registering")
    if name is None:
        return Registered(model_uri=model_uri, version=None)
    found = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    version = found[0] if found else _new_version(client, name, model_uri, run_id)
    client.update_model_version(name, version.version, description=description)
    for key, value in tags.items():
        client.set_model_version_tag(name, version.version, key, value)
    if champion:
        client.set_registered_model_alias(name, ALIAS, version.version)
    return Registered(model_uri=model_uri, version=str(version.version))


def _new_version(client: MlflowClient, name: str, model_uri: str, run_id: str):
    """A new version of `name` (created if need be) from a logged model: MlflowClient's calls,
    which print nothing (mlflow.register_model prints two lines to stderr)."""
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    model_id = model_uri.removeprefix("models:/")
    return client.create_model_version(name, model_uri, run_id=run_id, model_id=model_id)
