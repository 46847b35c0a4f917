"""One live driver per experiment, and one process at a time creating a local MLflow store.

The driver holds an exclusive `flock` on `<storage>/<experiment>/driver.lock` for its whole
life, with who it is written inside. The kernel drops the lock the moment the process dies
(however it dies), so a lock left by a dead driver is taken over safely by the next one, with
no stale-lock timeout to guess. On a shared volume the same call locks across machines where the
filesystem supports it (NFSv4, CephFS, EFS: the Linux client maps flock to POSIX locks); a
filesystem without locks is refused rather than trusted. S3 has no locks: the driver then
locks a file in its working directory, which guards that machine only.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from orchestrator.errors import UserError

LOCK_FILE = "driver.lock"


class ExperimentLocked(UserError):
    """Another live driver holds the experiment."""


class DriverLock:
    def __init__(self, path: Path, experiment: str):
        self.path, self.experiment = path, experiment
        self._fd: int | None = None
        self.previous: dict | None = None  # the holder of a lock taken over from a dead driver

    def acquire(self, command: str) -> DriverLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(_read_holder(fd))
            os.close(fd)
            raise ExperimentLocked(
                f"experiment {self.experiment!r} is in use by another driver ({holder}); wait for it to finish "
                f"or stop it. Lock: {self.path}"
            ) from None
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise UserError(
                    f"cannot lock {self.path}: the filesystem does not support file locks, so two drivers could "
                    "corrupt the experiment; use a volume with lock support (NFSv4, CephFS, EFS) or S3 storage"
                ) from None
            raise
        self.previous = _read_holder(fd) or None  # a clean release leaves the file empty
        holder = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time(), "command": command}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)  # "released cleanly": the next driver takes over nothing
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def takeover_note(self) -> str | None:
        """A line about the dead driver whose lock this one took over, if any."""
        if not self.previous:
            return None
        return f"Taking over experiment {self.experiment!r} from a driver that stopped ({_describe(self.previous)})"


def lock_holder(path: str | Path) -> str:
    """Who holds the lock at `path` now, described; "" when no live driver does."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return ""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _describe(_read_holder(fd))
    except OSError:
        return ""
    finally:
        os.close(fd)  # closing drops the shared lock taken to look
    return ""


def _read_holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}


def _describe(holder: dict) -> str:
    if not holder:
        return "holder unknown"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("since", 0)))
    return f"pid {holder.get('pid')} on host {holder.get('host')}, `{holder.get('command')}` since {since}"


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """A blocking exclusive lock on `path` for the duration of the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
