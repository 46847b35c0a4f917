"""What a trial's checkpoints hold, and when: the one home of the checkpoint format.

A trial reports a checkpoint every epoch; what it holds depends on the epoch:
- every epoch: `history.json` (`trainables.history`), the durable copy of the trial's record;
- every RESUME_EVERY-th epoch, and whenever the newest resume point is older than
  RESUME_EVERY_S: `resume.pt`, what the trial resumes from: its weights and optimizer state,
  except the body groups frozen since the first epoch. Those hold exactly what the trial's
  set-up gave them (the source weights, or its seeded initialisation), never moved, and have no
  optimizer state; a resuming trial sets them up again and a digest checks they are the same;
- at the last epoch: `model.pt`, the whole model's weights (no optimizer state), which the
  driver registers if the trial is the best.
A trial handed a checkpoint without `resume.pt` loads the newest resume point beside it and
re-runs the epochs in between without reporting them again. Every epoch is seeded
(`trainables.seeds`), so on the CPU that re-run, and everything after it, is bit-identical to
the run that was interrupted.

Tune keeps a trial's newest CHECKPOINTS_TO_KEEP checkpoints, two resume points' worth, so one is
normally among them; only a trial resumed from a snapshot of Ray's that lags its newest
checkpoint by more than RESUME_EVERY epochs (epochs shorter than Ray's snapshot period) finds
none, and re-runs from its first epoch, exactly as well. Weights are read with
`torch.load(weights_only=True)`: a checkpoint on shared storage can run no code.
"""

from __future__ import annotations

import logging
import os
import posixpath
import time

import pyarrow.fs as pafs
import torch
from ray import tune
from torch import nn

from trainables.history import write_history
from trainables.models import LayerGroups, state_digest

logger = logging.getLogger(__name__)

RESUME_FILE = "resume.pt"
WEIGHTS_FILE = "model.pt"
RESUME_EVERY = 4  # epochs: a crash costs at most 3 epochs of recomputation
RESUME_EVERY_S = 600.0  # ... or 10 minutes of it, when epochs are long
CHECKPOINTS_TO_KEEP = 2 * RESUME_EVERY


class CheckpointMismatch(RuntimeError):
    """A resume point that does not fit the trial that reads it."""


class ResumeSchedule:
    """When a trial writes a resume point (see the module docstring). Never at the last epoch:
    nothing resumes after it."""

    def __init__(self, max_epochs: int):
        self.max_epochs = max_epochs
        self._last = time.monotonic()

    def due(self, epoch: int) -> bool:
        due = epoch < self.max_epochs and (epoch % RESUME_EVERY == 0 or time.monotonic() - self._last >= RESUME_EVERY_S)
        if due:
            self._last = time.monotonic()
        return due


class TrialState:
    """A trial's model and optimizer, written to and read from its checkpoints."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None, groups: LayerGroups):
        self.model, self.optimizer, self.groups = model, optimizer, groups
        self._digests: dict[int, str] = {}  # untouched groups -> digest of their tensors, as set up

    def write(self, directory: str, history: list[dict], *, untouched: int, resume: bool, final: bool) -> None:
        """The history; with `resume`, a resume point leaving out the first `untouched` body groups
        (frozen since the first epoch); with `final`, the whole model's weights."""
        write_history(directory, history)
        if resume:
            left_out = self._keys(untouched)
            state = {
                "epoch": int(history[-1]["metrics"]["epoch"]),
                "model": {k: v for k, v in self.model.state_dict().items() if k not in left_out},
                "optimizer": self.optimizer.state_dict(),
                "untouched": untouched,
                "digest": self._digest(untouched),
            }
            torch.save(state, os.path.join(directory, RESUME_FILE))
        if final:
            torch.save(self.model.state_dict(), os.path.join(directory, WEIGHTS_FILE))

    def read(self, directory: str, device: torch.device) -> int | None:
        """Load the resume point in `directory` into the model and optimizer, which must be freshly
        set up; returns its epoch, or None if `directory` holds none (or one cut short)."""
        path = os.path.join(directory, RESUME_FILE)
        if not os.path.exists(path):
            return None
        try:
            state = torch.load(path, map_location=device, weights_only=True)
        except Exception as exc:  # noqa: BLE001 - a file cut short by a killed upload: use an older one
            logger.warning("resume point %s cannot be read (%s); looking for an older one", path, exc)
            return None
        untouched = int(state["untouched"])
        if state["digest"] != self._digest(untouched):
            raise CheckpointMismatch(
                f"{path}: the first {untouched} layer groups are not what this trial's set-up gives them "
                "(did the source weights change since the sweep started?)"
            )
        if set(state["model"]) != set(self.model.state_dict()) - self._keys(untouched):
            raise CheckpointMismatch(f"{path}: holds other tensors than this trial's model without its first groups")
        self.model.load_state_dict(state["model"], strict=False)
        self.optimizer.load_state_dict(state["optimizer"])
        return int(state["epoch"])

    def _keys(self, untouched: int) -> set[str]:
        return {key for group in self.groups.body[:untouched] for key in group}

    def _digest(self, untouched: int) -> str:
        if untouched not in self._digests:  # the untouched groups never change: hash them once
            self._digests[untouched] = state_digest(self.model, sorted(self._keys(untouched)))
        return self._digests[untouched]


def resume_candidates(checkpoint: tune.Checkpoint) -> list[tune.Checkpoint]:
    """`checkpoint` and the older checkpoints of its trial that hold a resume point, newest first."""
    fs = checkpoint.filesystem
    trial_dir, own = posixpath.split(checkpoint.path.rstrip("/"))
    found = fs.get_file_info(pafs.FileSelector(trial_dir, recursive=True, allow_not_found=True))
    folders = {
        posixpath.dirname(info.path)
        for info in found
        if info.type == pafs.FileType.File and posixpath.basename(info.path) == RESUME_FILE
    }
    older = sorted(
        (f for f in folders if posixpath.basename(f).startswith("checkpoint_") and posixpath.basename(f) <= own),
        reverse=True,
    )
    return [tune.Checkpoint(path, filesystem=fs) for path in older]


def load_final_weights(directory: str, model: nn.Module) -> None:
    """The whole model's weights, as a trial's last epoch wrote them."""
    model.load_state_dict(torch.load(os.path.join(directory, WEIGHTS_FILE), map_location="cpu", weights_only=True))
