"""`orchestrator list`: the sweeps under a storage location, their state, progress and best value.

Everything comes from the record: `sweep.json` and the driver lock say which sweep is current
and whether a driver is running it now, the signed state says how many trials ran and ended,
and MLflow's parent run says the best value and the compute spent (when MLflow answers).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow.fs as pafs
from mlflow import MlflowClient

from orchestrator.errors import UserError
from orchestrator.spec import RESERVED_STORAGE_NAMES
from orchestrator.store import (
    FINISHED,
    LOCK_FILE,
    RUNNING,
    Storage,
    lock_holder,
    read_record,
    read_state,
)
from orchestrator.tracking import parent_runs

STOPPED = "stopped"  # recorded as running, but no live driver holds the experiment: it died
PARENT_STATES = {"FINISHED": FINISHED, "KILLED": "interrupted", "FAILED": "failed"}


@dataclass
class SweepRow:
    experiment: str
    sweep_id: str
    current: bool
    state: str  # running | finished | interrupted | stopped | unverified
    ended: int  # trials that ran and ended
    asked: int  # trials the sweep asks for
    objective: str = ""  # "val_acc max"
    best: float | None = None  # the best trial's final objective
    epochs: int | None = None  # compute spent: epochs run over all trials
    holder: str = ""  # the live driver, when running
    parent_run_id: str = ""


def list_sweeps(storage: Storage, tracking_uri: str | None, experiment: str | None = None) -> list[SweepRow]:
    experiments = [experiment] if experiment else _experiments(storage)
    client = MlflowClient(tracking_uri) if tracking_uri else None
    rows = []
    for name in experiments:
        record = read_record(storage, name)
        if record is None:
            continue
        holder = lock_holder(storage.path(name, LOCK_FILE)) if storage.is_local else ""
        for sweep_id in _sweep_ids(storage, name):
            current = sweep_id == record.sweep_id
            row = _row(storage, name, sweep_id, current)
            if current:
                row.state = RUNNING if holder else (STOPPED if record.status == RUNNING else record.status)
                row.holder = holder
            if client is not None:
                _add_mlflow(client, row)
            rows.append(row)
    return rows


def _experiments(storage: Storage) -> list[str]:
    names = _folders(storage, storage.path())
    return [n for n in names if n not in RESERVED_STORAGE_NAMES and storage.exists(n, "sweep.json")]


def _sweep_ids(storage: Storage, experiment: str) -> list[str]:
    return [name for name in _folders(storage, storage.path(experiment)) if name.startswith("sweep-")]


def _folders(storage: Storage, path: str) -> list[str]:
    infos = storage.fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return sorted(info.base_name for info in infos if info.type == pafs.FileType.Directory)


def _row(storage: Storage, experiment: str, sweep_id: str, current: bool) -> SweepRow:
    try:
        state = read_state(storage, experiment, sweep_id)
    except UserError:
        return SweepRow(experiment, sweep_id, current, "unverified", 0, 0)
    if state is None:  # the driver died before Ray's first snapshot
        return SweepRow(experiment, sweep_id, current, STOPPED, 0, 0)
    manifest = state.manifest
    settled = FINISHED if manifest.complete else "interrupted"
    return SweepRow(experiment, sweep_id, current, settled, len(manifest.ended), manifest.requested)


def _add_mlflow(client: MlflowClient, row: SweepRow) -> None:
    try:
        parents = parent_runs(client, row.experiment, row.sweep_id)
    except Exception:  # noqa: BLE001 - MLflow down or elsewhere: the storage's own facts still stand
        return
    if not parents:
        return
    parent = parents[0]
    row.parent_run_id = parent.info.run_id
    row.objective = parent.data.tags.get("objective", "")
    metric = row.objective.split(" ")[0]
    row.best = parent.data.metrics.get(f"best_trial.final_{metric}")
    epochs = parent.data.metrics.get("epochs_run")
    row.epochs = int(epochs) if epochs is not None else None
    if not row.current:
        row.state = PARENT_STATES.get(parent.info.status, row.state)


def storage_or_default(location: str | None) -> Storage:
    storage = Storage(location or "./runs")
    if not storage.exists():
        raise UserError(f"no sweeps in {storage.display()}: nothing has run there (pass --storage PATH or a SPEC)")
    return storage
