"""Ray's JSON result logger, made loss-free across trial restarts (see orchestrator.records)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.fs as pafs
from ray.air.constants import EXPR_PARAM_FILE, EXPR_RESULT_FILE
from ray.tune.logger import JsonLoggerCallback
from ray.tune.utils.util import SafeFallbackEncoder

from orchestrator.records.trials import _read_lines, checkpoint_history, with_history


def _rebuilt(trial, records: list[dict]) -> list[dict] | None:
    """A (re)starting trial's records: what it resumes from and nothing after; None to keep them as they are."""
    if trial.checkpoint is None:
        return []  # it starts from scratch: every epoch is run and reported again
    history = checkpoint_history(trial.checkpoint)
    if not history:
        return None  # nothing to rebuild from (warned)
    backfill = {"trial_id": trial.trial_id, "config": trial.config, "restored_from_checkpoint": True}
    return with_history(records, history, through=int(history[-1]["epoch"]), backfill=backfill)


class ResultLog(JsonLoggerCallback):
    """Ray's JSON logger, made loss-free across trial restarts (see the module docstring)."""

    def __init__(self):
        super().__init__()
        # trial id -> newest epoch in its file; -1 for none, since an infeasible trial's one record
        # (its costs, measured before training) is epoch 0
        self._last_epoch: dict[str, int] = {}

    def _restore_from_remote(self, file_name: str, trial) -> None:
        # log_trial_start calls this before it opens the file for appending. Ray's version
        # overwrites the local file with the uploaded copy, which may be older.
        if file_name != EXPR_RESULT_FILE:
            return super()._restore_from_remote(file_name, trial)
        local = Path(trial.local_path, file_name)
        if not local.exists():  # this driver has no copy of its own: start from the uploaded one
            super()._restore_from_remote(file_name, trial)
        records = _read_lines(pafs.LocalFileSystem(), str(local))
        rebuilt = _rebuilt(trial, records)
        if rebuilt is not None:
            staged = local.with_name(f"{file_name}.rebuilt")
            staged.write_text("".join(json.dumps(r, cls=SafeFallbackEncoder) + "\n" for r in rebuilt))
            os.replace(staged, local)
            records = rebuilt
        self._last_epoch[trial.trial_id] = max((r["epoch"] for r in records if "epoch" in r), default=-1)

    def update_config(self, trial, config: dict) -> None:
        # params.json only: Ray's params.pkl would put a pickle on shared storage that nothing needs.
        self._trial_configs[trial] = config
        with Path(trial.local_path, EXPR_PARAM_FILE).open("w") as file:
            json.dump(config, file, indent=2, sort_keys=True, cls=SafeFallbackEncoder)

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        if trial not in self._trial_files:
            self.log_trial_start(trial)  # before reading the newest epoch, which starting sets
        epoch = result.get("epoch")
        if epoch is not None:
            if epoch <= self._last_epoch.get(trial.trial_id, -1):
                return  # the final epoch again, re-reported by a trial restored after it finished
            self._last_epoch[trial.trial_id] = epoch
        super().log_trial_result(iteration, trial, result)
