"""The sweep's ledger: Ray's experiment snapshots, signed, and the list of trials they hold.

Ray Tune snapshots its experiment state now and then (trial states, the searcher; pickles).
After each snapshot the `Ledger` callback copies those files from the driver's own staging
folder (local disk, written by this process), adds the trials it has seen start and end, signs
the lot (`orchestrator.signing`) and writes it to storage in one file, `SweepState`. Only then
does the searcher tell Optuna which trials ended (`FidelityOptunaSearch.flush_tells`), so the
study is never ahead of the state a new driver resumes from: a trial Optuna has finished is one
Ray will not run again.

A new driver reads this file, checks its signature, and hands Ray those bytes through
`orchestrator.verified_fs`. Recording, `orchestrator sync` and `orchestrator check` read the
trial list from it too, never from Ray's pickles.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ray.tune import Callback

from orchestrator import faults
from orchestrator.signing import sign, verify
from orchestrator.storage import Storage
from orchestrator.verified_fs import vouch

logger = logging.getLogger(__name__)

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


class Ledger(Callback):
    """Keeps the manifest and, after each Ray snapshot, writes the signed state and lets the
    searcher tell Optuna what that snapshot holds."""

    def __init__(self, storage: Storage, experiment: str, sweep_id: str, manifest: Manifest, searcher=None):
        self.storage, self.experiment, self.sweep_id = storage, experiment, sweep_id
        self.manifest = manifest
        self.searcher = searcher  # FidelityOptunaSearch, or None (no deferred tells)
        self._staging: str | None = None
        self._seen: dict[str, tuple[int, int]] = {}  # staged file -> (mtime_ns, size) at the last write

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_staging": None, "_seen": {}}

    # -- trials ---------------------------------------------------------------------------
    def on_trial_start(self, iteration, trials, trial, **info):
        self._locate(trial)
        entry = self.manifest.trials.get(trial.trial_id)
        if entry is None:
            number = self.searcher.optuna_number(trial.trial_id) if self.searcher is not None else None
            entry = self.manifest.trials[trial.trial_id] = TrialEntry(config=_plain(trial.config), optuna_number=number)
        entry.started_at = entry.started_at or time.time()
        entry.ended_at, entry.errored, entry.error = None, False, ""

    on_trial_restore = on_trial_start

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._ended(trial, errored=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._ended(trial, errored=True, error=_error_text(trial))

    def _ended(self, trial, *, errored: bool, error: str = "") -> None:
        entry = self.manifest.trials.get(trial.trial_id)
        if entry is None:  # ended before it started (e.g. an error while restoring)
            entry = self.manifest.trials[trial.trial_id] = TrialEntry(config=_plain(trial.config))
        entry.ended_at, entry.errored, entry.error = time.time(), errored, error

    # -- snapshots ------------------------------------------------------------------------
    def on_step_end(self, iteration, trials, **info):
        if self._staging is None and trials:
            self._locate(trials[0])
        self.save(force=False)

    def on_experiment_end(self, trials, **info):
        if self._staging is None and trials:
            self._locate(trials[0])
        self.save(force=True)  # after Ray's final snapshot

    def _locate(self, trial) -> None:
        """Where Ray stages its snapshots."""
        self._staging = trial.storage.experiment_driver_staging_path

    def save(self, force: bool) -> None:
        staged = _staged_files(self._staging)
        stamps = {name: (stat.st_mtime_ns, stat.st_size) for name, (stat, _) in staged.items()}
        if not staged or (stamps == self._seen and not force):
            return
        faults.reach("before-state")
        files = {name: path.read_bytes() for name, (_, path) in staged.items()}
        write_state(self.storage, self.experiment, self.sweep_id, SweepState(ray_files=files, manifest=self.manifest))
        vouch(self.storage.path(self.experiment, self.sweep_id), files)  # Ray may read back what it saved
        self._seen = stamps
        faults.reach("after-state")
        if self.searcher is not None:
            self.searcher.flush_tells()


def _staged_files(staging: str | None) -> dict[str, tuple[os.stat_result, Path]]:
    """Ray's top-level experiment files in the driver's staging folder (not trial folders, not temporaries)."""
    if staging is None or not os.path.isdir(staging):
        return {}
    return {
        entry.name: (entry.stat(), Path(entry.path))
        for entry in os.scandir(staging)
        if entry.is_file() and not entry.name.startswith(("tmp", "."))
    }


def _plain(config: dict) -> dict:
    """The trial config as JSON would carry it."""
    return json.loads(json.dumps(config, default=str))


def _error_text(trial) -> str:
    """The end of the trial's error report, read from the driver's own copy."""
    try:
        return Path(trial.error_file).read_text()[-4000:] if trial.error_file else ""
    except OSError:
        return ""
