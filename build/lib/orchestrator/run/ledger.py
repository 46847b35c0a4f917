"""The sweep's ledger: Ray's experiment snapshots, signed, and the list of trials they hold.

Ray Tune snapshots its experiment state now and then (trial states, the searcher; pickles).
After each snapshot the `Ledger` callback copies those files from the driver's own staging
folder (local disk, written by this process), adds the trials it has seen start and end, signs
the lot (`orchestrator.store.signing`) and writes it to storage in one file, `SweepState`. Only then
does the searcher tell Optuna which trials ended (`FidelityOptunaSearch.flush_tells`), so the
study is never ahead of the state a new driver resumes from: a trial Optuna has finished is one
Ray will not run again.

A new driver reads this file, checks its signature, and hands Ray those bytes through
`orchestrator.store.verified_fs`. Recording, `orchestrator sync` and `orchestrator check` read the
trial list from it too, never from Ray's pickles.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from ray.tune import Callback

from orchestrator import faults
from orchestrator.store import Manifest, Storage, SweepState, TrialEntry, vouch, write_state

logger = logging.getLogger(__name__)


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
