"""Local paths from user input, checked before any system call sees them.

A path the OS cannot take (too long, a NUL byte, `~user` of an unknown user) makes pathlib
raise OSError, ValueError or RuntimeError from deep inside a check; here it is one reason.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path


def _pathconf(name: str, fallback: int) -> int:
    try:
        return os.pathconf("/", name)
    except (AttributeError, OSError, ValueError):
        return fallback


# The OS's own limits (Linux: 4096 bytes per path including its final NUL, 255 bytes per name).
MAX_PATH_BYTES = _pathconf("PC_PATH_MAX", 4096) - 1
MAX_NAME_BYTES = _pathconf("PC_NAME_MAX", 255)


class PathProblem(ValueError):
    """Why a path from user input cannot be used; reads after "the path ..."."""


def checked_path(raw: str) -> Path:
    """`raw` with `~` expanded, or PathProblem if no system call could take it."""
    if not raw.strip():
        raise PathProblem("is empty")
    if "\0" in raw:
        raise PathProblem("contains a NUL character")
    try:
        path = Path(raw).expanduser()
    except RuntimeError:  # ~user of an unknown user, or no home directory
        raise PathProblem(f"starts with {raw.split('/')[0]!r}, whose home directory is unknown") from None
    try:
        encoded = os.fsencode(path)
    except UnicodeEncodeError:
        raise PathProblem("is not valid text for a file name") from None
    if len(encoded) > MAX_PATH_BYTES:
        raise PathProblem(f"is {len(encoded)} bytes long; the OS allows at most {MAX_PATH_BYTES}")
    longest = max(encoded.split(b"/"), key=len)
    if len(longest) > MAX_NAME_BYTES:
        raise PathProblem(f"has a name of {len(longest)} bytes; the OS allows at most {MAX_NAME_BYTES} per name")
    return path


def file_kind(path: Path) -> str:
    """'file', 'directory', 'missing', 'other' (a pipe, socket or device), or PathProblem saying
    why it cannot be looked at (permissions, a link loop)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "missing"
    except NotADirectoryError:
        return "missing"
    except OSError as exc:
        raise PathProblem(f"cannot be looked at: {exc.strerror or type(exc).__name__}") from None
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "directory"
    return "other"


def cache_dir() -> Path:
    """Where this user's caches live: $ORCHESTRATOR_CACHE_DIR, else $XDG_CACHE_HOME/orchestrator, else
    ~/.cache/orchestrator. A cache only ever saves work: a missing or unreadable one is ignored."""
    if os.environ.get("ORCHESTRATOR_CACHE_DIR"):
        return Path(os.environ["ORCHESTRATOR_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "orchestrator"


def write_atomically(target: Path, text: str) -> None:
    """Written whole (a temporary file renamed over the old one); a cache that cannot be written is no error."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, staging = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
    except OSError:
        return
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(staging, target)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(staging)
