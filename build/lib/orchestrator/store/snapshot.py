"""The driver's signed snapshot of a sweep: Ray's experiment state and the trials it holds."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from orchestrator.store.filesystem import Storage
from orchestrator.store.signing import sign, verify

STATE_FILE = "orchestrator-state.signed"  # in the Ray experiment folder, beside Ray's own files


@dataclass
class TrialEntry:
    """One Ray trial as the driver saw it."""

    config: dict[str, Any]
    optuna_number: int | None = None
    started_at: float | None = None
    ended_at: float | None = None  # None: not ended (running, pending, or interrupted)
    errored: bool = False
    error: str = ""


@dataclass
class Manifest:
    requested: int  # trials the sweep asks for
    trials: dict[str, TrialEntry] = field(default_factory=dict)  # by Ray trial id, in creation order

    @property
    def ended(self) -> list[str]:
        return [trial_id for trial_id, entry in self.trials.items() if entry.ended_at is not None]

    @property
    def complete(self) -> bool:
        """Every trial the sweep asked for has run and ended."""
        return len(self.trials) >= self.requested and len(self.ended) == len(self.trials)

    def to_json(self) -> dict:
        return {"requested": self.requested, "trials": {tid: asdict(entry) for tid, entry in self.trials.items()}}

    @classmethod
    def from_json(cls, data: dict) -> Manifest:
        trials = {tid: TrialEntry(**entry) for tid, entry in data["trials"].items()}
        return cls(requested=int(data["requested"]), trials=trials)


@dataclass
class SweepState:
    """What the driver signs: Ray's top-level experiment files (by name) and the manifest."""

    ray_files: dict[str, bytes]
    manifest: Manifest

    def encode(self) -> bytes:
        names = sorted(self.ray_files)
        header = {"files": [[name, len(self.ray_files[name])] for name in names], "manifest": self.manifest.to_json()}
        return json.dumps(header).encode() + b"\n" + b"".join(self.ray_files[name] for name in names)

    @classmethod
    def decode(cls, payload: bytes) -> SweepState:
        head, _, body = payload.partition(b"\n")
        header = json.loads(head)
        files, offset = {}, 0
        for name, size in header["files"]:
            files[name] = body[offset : offset + size]
            offset += size
        return cls(ray_files=files, manifest=Manifest.from_json(header["manifest"]))


def read_state(storage: Storage, experiment: str, sweep_id: str) -> SweepState | None:
    """The sweep's signed state, verified; None if the driver never wrote one."""
    if not storage.exists(experiment, sweep_id, STATE_FILE):
        return None
    blob = storage.read_bytes(experiment, sweep_id, STATE_FILE)
    return SweepState.decode(verify(blob, storage.display(experiment, sweep_id, STATE_FILE)))


def write_state(storage: Storage, experiment: str, sweep_id: str, state: SweepState) -> None:
    storage.write_bytes(sign(state.encode()), experiment, sweep_id, STATE_FILE)
