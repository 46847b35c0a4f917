"""Fault injection for the kill tests: the driver dies at a named phase, like a lost machine.

`ORCHESTRATOR_FAULT=<phase>` (or `<phase>@<n>` for its n-th occurrence) makes `reach(phase)`
SIGKILL the driver, and with it the local Ray cluster it started when it leads its process
group. Unset, `reach` costs one dictionary lookup. Test-only: nothing else sets the variable.
"""

from __future__ import annotations

import os
import signal
import sys
from collections import Counter

ENV = "ORCHESTRATOR_FAULT"
PHASES = (
    "start",  # the experiment is locked and the sweep recorded as current
    "parent-run",  # the MLflow parent run exists
    "pretraining",  # pretraining tasks are running
    "tuner",  # Ray's Tuner exists (tuner.pkl written), before its first snapshot
    "before-state",  # Ray has snapshotted; the signed state is not written yet
    "after-state",  # the signed state is written; Optuna not yet told what it holds
    "result",  # a trial result has arrived (counted: result@7 is the 7th)
    "trial-end",  # a trial has ended and its MLflow run is closed
    "recording",  # the end-of-sweep pass is replaying a trial into MLflow (counted)
    "registering",  # the best model is logged, not yet registered or tagged
    "report",  # the report is built, not yet logged
    "finished",  # the parent run is FINISHED, sweep.json not yet updated
)
_seen: Counter[str] = Counter()


def reach(phase: str) -> None:
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    name, _, nth = wanted.partition("@")
    if name != phase:
        return
    _seen[phase] += 1
    if _seen[phase] < int(nth or 1):
        return
    print(f"fault injected: the driver dies at phase {phase!r}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    if os.getpgid(0) == os.getpid():  # a session leader: take the local Ray cluster down with it
        os.killpg(0, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)
