"""The MLflow store a sweep writes to: which one, whether it answers, and its experiments."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Run
from sqlalchemy import event
from sqlalchemy.engine import Engine

from orchestrator.environ import temporary_environ
from orchestrator.errors import UserError
from orchestrator.store import file_lock
from orchestrator.tracking.schema import PARENT, ROLE, SWEEP_ID
from orchestrator.uris import redact, redact_in


def default_tracking_uri(spec_uri: str | None) -> str:
    """Spec, then MLFLOW_TRACKING_URI, then an SQLite file in the working directory."""
    return spec_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlflow.db').resolve()}"


def check_reachable(tracking_uri: str, after: str = "Nothing was started.") -> None:
    """Fail in seconds, not after MLflow's minutes of retries, if the store cannot be reached.

    A new SQLite store is created here, by one process at a time: two drivers creating the same
    file at once would each run MLflow's migrations and leave it half-built."""
    sqlite = tracking_uri.startswith("sqlite:///")
    lock = Path(tracking_uri.removeprefix("sqlite:///") + ".lock") if sqlite else None
    try:
        with temporary_environ(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="10"):
            if lock is not None:
                with file_lock(lock):
                    commit_lazily(tracking_uri)
                    MlflowClient(tracking_uri).search_experiments(max_results=1)
            else:
                MlflowClient(tracking_uri).search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001 - any failure here means the store is unusable
        reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        reason = redact_in(reason, tracking_uri)  # MLflow's own message repeats the URL, credentials included
        raise UserError(
            f"MLflow tracking store {redact(tracking_uri)} is unreachable ({reason}); start it, or set "
            f"MLFLOW_TRACKING_URI / mlflow.tracking_uri. {after}"
        ) from None


# MLflow 3's UI opens an experiment of unknown kind on its GenAI overview (traces); this kind opens
# the runs table, where a sweep's parent and child runs are.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}

# SQLite stores whose commits wait for the OS, not the disk (by the path SQLite reports).
_LAZY_STORES: set[str] = set()


def commit_lazily(tracking_uri: str) -> None:
    """A local SQLite store in WAL mode, committing with synchronous=NORMAL, for this process.

    MLflow commits several times per call (params, metrics, tags apart), and a sweep of many
    short trials makes thousands of calls on the driver's loop: in the default rollback-journal
    mode each commit waits for the disk (about 1 ms here), in WAL mode with NORMAL sync it costs
    microseconds. A driver killed at any moment loses nothing committed; only a power cut or an
    OS crash may lose the last commits, and then `orchestrator check` says what is missing and
    `orchestrator sync` replays it from Ray's records. (SQLite's WAL needs a local disk, as
    SQLite itself does.)"""
    if not _LAZY_STORES:
        event.listen(Engine, "connect", _lazy_commits)
    _LAZY_STORES.add(os.path.realpath(tracking_uri.removeprefix("sqlite:///")))


def _lazy_commits(connection, _record) -> None:
    if isinstance(connection, sqlite3.Connection):
        path = connection.execute("PRAGMA database_list").fetchone()[2]
        if path and os.path.realpath(path) in _LAZY_STORES:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")


def experiment_id(client: MlflowClient, name: str) -> str:
    """The experiment's id, creating it if needed (with artifacts beside a local SQLite store, not in ./mlruns)."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        if not set(EXPERIMENT_KIND) & set(found.tags):
            client.set_experiment_tag(found.experiment_id, *next(iter(EXPERIMENT_KIND.items())))
        return found.experiment_id
    location = Path("mlartifacts").resolve().as_uri() if client.tracking_uri.startswith("sqlite:") else None
    return client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_KIND)


def parent_runs(client: MlflowClient, experiment: str, sweep_id: str) -> list[Run]:
    """The parent run(s) of a sweep: tagged with its id and the `sweep` role (one, when the record holds)."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return client.search_runs([found.experiment_id], f"tags.`{SWEEP_ID}` = '{sweep_id}' and tags.`{ROLE}` = 'sweep'")


def child_runs(client: MlflowClient, parent: Run) -> list[Run]:
    """Every child run of a parent, page by page."""
    found, token = [], None
    while True:
        page = client.search_runs(
            [parent.info.experiment_id], f"tags.`{PARENT}` = '{parent.info.run_id}'", page_token=token
        )
        found += list(page)
        token = page.token
        if not token:
            return found
