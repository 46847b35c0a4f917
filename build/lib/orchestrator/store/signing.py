"""Proof that the driver wrote a file: an HMAC-SHA256 tag keyed by a secret only drivers hold.

Storage is shared by every pod of a cluster, so anything there may have been written by a worker.
Ray keeps its experiment state as pickles, and unpickling runs code, so the driver signs what it
saves and loads nothing whose tag does not match (`orchestrator.run.ledger`).

The key comes from `ORCHESTRATOR_STATE_KEY` (on Kubernetes, a Secret given to the head pod only),
else from a key file this user owns (`~/.config/orchestrator/state.key`, created on first use,
mode 0600). A driver on another machine needs the same key to resume a sweep.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from orchestrator.errors import UserError

KEY_ENV = "ORCHESTRATOR_STATE_KEY"
MAGIC = b"orchestrator-signed-v1\n"
TAG_BYTES = hashlib.sha256().digest_size


class UntrustedState(UserError):
    """Signed data whose tag does not match: written by someone without the key, or altered."""


def key_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "orchestrator" / "state.key"


def state_key() -> bytes:
    """The signing key: the environment's, else this user's key file (created if missing)."""
    if os.environ.get(KEY_ENV):
        return os.environ[KEY_ENV].encode()
    path = key_file()
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_hex(32).encode()
    try:  # O_EXCL: two drivers starting at once agree on one key
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as file:
        file.write(key)
    return key


def sign(payload: bytes, key: bytes | None = None) -> bytes:
    """`payload` behind a header and its tag, as one blob to write in one go."""
    tag = hmac.new(key or state_key(), payload, hashlib.sha256).digest()
    return MAGIC + tag + payload


def verify(blob: bytes, where: str, key: bytes | None = None) -> bytes:
    """The payload of a signed blob, or UntrustedState naming `where`."""
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + TAG_BYTES:
        raise UntrustedState(f"{where} is not a signed sweep state file; refusing to load it")
    tag, payload = blob[len(MAGIC) : len(MAGIC) + TAG_BYTES], blob[len(MAGIC) + TAG_BYTES :]
    expected = hmac.new(key or state_key(), payload, hashlib.sha256).digest()
    if not hmac.compare_digest(tag, expected):
        raise UntrustedState(
            f"{where} was not signed with this driver's key ({KEY_ENV} or {key_file()}): it was altered, or "
            "written by a driver with another key; refusing to load it. Set the key the sweep was started with, "
            "or start over with --fresh"
        )
    return payload
