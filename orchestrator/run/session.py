"""What the commands share about one sweep: its storage, lock, tracking store, study and Ray."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import optuna
import ray

from orchestrator.errors import SpecError, UserError
from orchestrator.run.inputs import source_task, target_task
from orchestrator.run.pretrained import external_weights
from orchestrator.spec import SweepSpec
from orchestrator.store import (
    INTERRUPTED,
    LOCK_FILE,
    DriverLock,
    Storage,
    SweepRecord,
    is_remote_cluster,
    read_record,
    write_record,
)
from orchestrator.tracking import (
    SweepRuns,
    credentials_file_problem,
    default_tracking_uri,
    withhold_credentials,
)
from orchestrator.uris import redact
from trainables.data import TaskData


@dataclass
class Sweep:
    """What the commands share about one sweep of one spec."""

    spec: SweepSpec
    source: str
    storage: Storage
    record: SweepRecord
    runs: SweepRuns
    study_location: str

    @property
    def sweep_id(self) -> str:
        return self.record.sweep_id


def mark_interrupted(sweep: Sweep) -> None:
    """Never recorded as finished: the parent run KILLED, sweep.json `interrupted`."""
    sweep.record.status = INTERRUPTED
    write_record(sweep.storage, sweep.spec.experiment, sweep.record)
    if sweep.runs.parent_run_id:
        sweep.runs.client.set_terminated(sweep.runs.parent_run_id, "KILLED")


def load_inputs(spec: SweepSpec, spec_path: str | Path) -> tuple[TaskData, dict, TaskData | None]:
    """Target data, hub/file weights and the pretraining data, loaded before anything is written,
    so a bad folder or file fails first."""
    source = str(spec_path)
    target, external = target_task(spec, source), external_weights(spec, source)
    return target, external, source_task(spec, source) if spec.weights.source == "pretrain" else None


def open_sweep(spec: SweepSpec, source: str, storage: Storage, record: SweepRecord, tracking_uri: str) -> Sweep:
    runs = SweepRuns(
        tracking_uri,
        spec.experiment,
        record.sweep_id,
        spec.early_stopping.max_epochs,
        spec.primary.key,
        spec.primary.mode,
        others=spec.objective_keys[1:],
    )
    return Sweep(spec, source, storage, record, runs, study_location(spec, storage))


def parent_tags(sweep: Sweep) -> dict[str, str]:
    return {
        "ray.experiment_path": sweep.storage.display(sweep.spec.experiment, sweep.sweep_id),
        "optuna.storage": redact(sweep.study_location),
        "optuna.study": sweep.sweep_id,
        "objective": ", ".join(f"{o.key} {o.mode}" for o in sweep.spec.objectives),  # the first picks the best
    }


def existing_sweep(spec: SweepSpec, storage: Storage, source: str, verb: str) -> SweepRecord:
    record = read_record(storage, spec.experiment)
    if record is None:
        raise SpecError(source, "experiment", f"no sweep of {spec.experiment!r} in {storage.display()} to {verb}")
    if record.spec_hash != spec.spec_hash():
        raise SpecError(source, "experiment", f"the current sweep of {spec.experiment!r} was run with a different spec")
    return record


@contextmanager
def experiment_lock(storage: Storage, experiment: str, command: str) -> Iterator[DriverLock]:
    """One live driver per experiment (see orchestrator.lock)."""
    path = Path(storage.path(experiment, LOCK_FILE)) if storage.is_local else Path(f".{experiment}.{LOCK_FILE}")
    lock = DriverLock(path.resolve(), experiment).acquire(command)
    try:
        yield lock
    finally:
        lock.release()


def open_storage(spec: SweepSpec, source: str, address: str | None) -> Storage:
    storage = Storage(spec.storage)
    if storage.is_local and is_remote_cluster(address):
        raise SpecError(
            source,
            "storage",
            (
                f"{spec.storage!r} is a local path, but the Ray cluster at {address} may run trials on other "
                "machines; use s3://bucket/prefix or a volume mounted at the same path on every node"
            ),
        )
    problem = storage.unwritable(spec.experiment)
    if problem:
        raise SpecError(source, "storage", f"cannot write to {storage.display(spec.experiment)}: {problem}")
    return storage


def study_location(spec: SweepSpec, storage: Storage) -> str:
    """`search.study_storage`, or a journal file beside the Ray results when they are local and in
    the working directory otherwise (a journal cannot live on S3; set search.study_storage to a
    database to share the study across machines)."""
    location = spec.search.study_storage or (
        storage.path(spec.experiment, "optuna.journal") if storage.is_local else f"optuna-{spec.experiment}.journal"
    )
    return location if "://" in location else str(Path(location).resolve())


def tracking_store_uri(spec: SweepSpec) -> str:
    """The MLflow store to use, with the environment's credentials kept for the server it names."""
    tracking_uri = default_tracking_uri(spec.mlflow.tracking_uri)
    problem = credentials_file_problem(tracking_uri)
    if problem:
        raise UserError(problem)
    warning = withhold_credentials(tracking_uri)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    # MLflow's default (7 retries, 120 s timeout) would stall Tune's event loop for minutes in an outage.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    return tracking_uri


@contextmanager
def sigterm_stops_gracefully() -> Iterator[None]:
    """SIGTERM (a pod being evicted) stops the sweep as Ctrl-C does: Tune saves its state first."""
    previous = signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def init_ray(address: str | None) -> None:
    if ray.is_initialized():
        return
    # Checkpointing every epoch of short trials is intended; Ray would warn about it.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the live view reports progress instead
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    quiet_ray_notices()
    ray.init(
        address=address,  # already resolved from --address or RAY_ADDRESS
        include_dashboard=False,
        logging_level="WARNING",
        # Workers' own output stays in Ray's session logs (/tmp/ray/session_latest/logs/): in the console
        # it would break into the live view. A trial's error still reaches its MLflow run and the console.
        log_to_driver=False,
        runtime_env={"worker_process_setup_hook": "trainables.worker_logs.quiet_worker_logs"},
    )


class _DropTuneHints(logging.Filter):
    """Ray Tune's notes on an interrupted run name its own API (`Tuner.restore(...)`); ours says how to resume."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tuner.restore" not in record.getMessage() and "Stop signal received" not in record.getMessage()


def quiet_ray_notices() -> None:
    # Token authentication stays on; Ray only announces it at every start.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    tune_logger = logging.getLogger("ray.tune.tune")
    if not any(isinstance(f, _DropTuneHints) for f in tune_logger.filters):
        tune_logger.addFilter(_DropTuneHints())
