"""Where a sweep keeps its files, which sweep is current, who may run it, and what the driver can vouch for."""

from orchestrator.store.filesystem import Storage, is_remote_cluster
from orchestrator.store.lock import LOCK_FILE, DriverLock, ExperimentLocked, file_lock, lock_holder
from orchestrator.store.signing import KEY_ENV, UntrustedState, sign, verify
from orchestrator.store.snapshot import Manifest, SweepState, TrialEntry, read_state, write_state
from orchestrator.store.sweeps import (
    FINISHED,
    INTERRUPTED,
    RUNNING,
    SweepRecord,
    current_sweep,
    read_record,
    write_record,
)
from orchestrator.store.verified_fs import forget, verified_filesystem, vouch

__all__ = [
    "DriverLock",
    "ExperimentLocked",
    "FINISHED",
    "INTERRUPTED",
    "KEY_ENV",
    "LOCK_FILE",
    "Manifest",
    "RUNNING",
    "Storage",
    "SweepRecord",
    "SweepState",
    "TrialEntry",
    "UntrustedState",
    "current_sweep",
    "file_lock",
    "forget",
    "is_remote_cluster",
    "lock_holder",
    "read_record",
    "read_state",
    "sign",
    "verified_filesystem",
    "verify",
    "vouch",
    "write_record",
    "write_state",
]
