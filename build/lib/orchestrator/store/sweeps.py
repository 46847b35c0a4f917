"""Which sweep of an experiment is current, and how far it got: `<storage>/<experiment>/sweep.json`.

Layout under `storage`:
    <storage>/<experiment>/sweep.json     the current sweep: id, spec hash, status
    <storage>/<experiment>/driver.lock    held by the live driver (orchestrator.store.lock)
    <storage>/<experiment>/optuna.journal Optuna studies (one per sweep), for optuna-dashboard
    <storage>/<experiment>/<sweep_id>/    Ray Tune's experiment (trial results and checkpoints) and
                                          the driver's signed state (orchestrator.run.ledger)
    <storage>/pretrained/                 source weights, cached by content hash
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict, dataclass

from orchestrator.errors import SpecError, UserError
from orchestrator.store.filesystem import Storage

STATE_FILE = "sweep.json"
RUNNING, INTERRUPTED, FINISHED = "running", "interrupted", "finished"
STATUSES = (RUNNING, INTERRUPTED, FINISHED)


@dataclass
class SweepRecord:
    sweep_id: str
    spec_hash: str
    status: str = RUNNING
    started: float = 0.0
    updated: float = 0.0


def read_record(storage: Storage, experiment: str) -> SweepRecord | None:
    """The experiment's current sweep; None if it has none; a UserError if the file is not one."""
    if not storage.exists(experiment, STATE_FILE):
        return None
    where = storage.display(experiment, STATE_FILE)
    try:
        data = json.loads(storage.read_bytes(experiment, STATE_FILE))
        record = SweepRecord(
            sweep_id=data["sweep_id"],
            spec_hash=data["spec_hash"],
            status=data.get("status", RUNNING),
            started=float(data.get("started", 0.0)),
            updated=float(data.get("updated", 0.0)),
        )
        valid = (
            isinstance(record.sweep_id, str)
            and record.sweep_id.startswith("sweep-")
            and "/" not in record.sweep_id
            and ".." not in record.sweep_id
            and isinstance(record.spec_hash, str)
            and record.status in STATUSES
        )
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        valid = False
    if not valid:
        raise UserError(
            f"{where} is not a valid sweep record (damaged or not written by orchestrator); move it away to "
            "start a new sweep of this experiment, or run with --fresh"
        )
    return record


def write_record(storage: Storage, experiment: str, record: SweepRecord) -> None:
    record.updated = time.time()
    storage.write_text(json.dumps(asdict(record), indent=2), experiment, STATE_FILE)


def current_sweep(
    storage: Storage, experiment: str, spec_hash: str, source: str, fresh: bool
) -> tuple[SweepRecord, bool]:
    """(the sweep to run, whether it resumes one): the recorded sweep unless `fresh`, else a new one."""
    record = None if fresh else read_record(storage, experiment)
    if record is not None:
        if record.spec_hash != spec_hash:
            raise SpecError(
                source,
                "experiment",
                f"experiment {experiment!r} already has a sweep in {storage.display(experiment)} with a "
                "different spec; run with --fresh to start a new sweep, or change `experiment`",
            )
        return record, True
    now = time.time()
    return SweepRecord(sweep_id=new_sweep_id(storage, experiment), spec_hash=spec_hash, started=now), False


def new_sweep_id(storage: Storage, experiment: str) -> str:
    """sweep-<date>-<time>, with a suffix if that second is taken."""
    sweep_id = time.strftime("sweep-%Y%m%d-%H%M%S")
    while storage.exists(experiment, sweep_id):
        sweep_id = f"{time.strftime('sweep-%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    return sweep_id
