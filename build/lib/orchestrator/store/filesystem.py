"""Where a sweep keeps its files: a local (or mounted) directory, or an S3 prefix.

One pyarrow filesystem serves the sweep's own files (state, pretrained-weight cache) and Ray
Tune's results and checkpoints, so all of them land in the same place. S3-compatible stores
(MinIO, ...) are reached through `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL`; credentials come
from the environment (or the usual AWS config), never from the spec.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.fs as pafs

from orchestrator.uris import redact, redact_in, scheme

__all__ = ["Storage", "is_remote_cluster", "redact", "redact_in"]  # redact* live in orchestrator.uris


class Storage:
    def __init__(self, uri: str):
        self.uri = uri
        kind = scheme(uri)  # case-insensitive: S3://bucket is s3
        if kind == "s3":
            self.fs = _s3_filesystem()
            self.root = uri[len("s3://") :].rstrip("/")
            self.is_local = False
        else:
            self.fs = pafs.LocalFileSystem()
            local = uri[len("file://") :] if kind == "file" else uri
            self.root = str(Path(local).expanduser().resolve())
            self.is_local = True

    def path(self, *parts: str) -> str:
        """A path inside this storage's filesystem."""
        return "/".join([self.root, *parts])

    def display(self, *parts: str) -> str:
        """The same location as a user would write it."""
        return ("s3://" if not self.is_local else "") + self.path(*parts)

    def exists(self, *parts: str) -> bool:
        return self.fs.get_file_info(self.path(*parts)).type != pafs.FileType.NotFound

    def read_bytes(self, *parts: str) -> bytes:
        with self.fs.open_input_stream(self.path(*parts)) as stream:
            return stream.read()

    def write_bytes(self, data: bytes, *parts: str) -> None:
        """Write whole, so readers never see half a file (rename locally; S3 PUTs are atomic)."""
        target = self.path(*parts)
        self.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        staging = f"{target}.tmp-{uuid.uuid4().hex[:8]}" if self.is_local else target
        with self.fs.open_output_stream(staging) as stream:
            stream.write(data)
        if staging != target:
            self.fs.move(staging, target)

    def read_text(self, *parts: str) -> str:
        return self.read_bytes(*parts).decode()

    def write_text(self, text: str, *parts: str) -> None:
        self.write_bytes(text.encode(), *parts)

    def unwritable(self, *parts: str) -> str | None:
        """Why nothing could be written at this location, or None. A local path is judged without
        writing anything (by its nearest existing folder); S3 is probed with an object deleted at once."""
        if not self.is_local:
            probe = (*parts, f".write-test-{uuid.uuid4().hex[:8]}")
            try:
                self.write_bytes(b"", *probe)
                self.fs.delete_file(self.path(*probe))
            except OSError as exc:
                return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return None
        path = Path(self.path(*parts))
        existing = next(p for p in (path, *path.parents) if p.exists())
        if not existing.is_dir():
            return f"{existing} is not a directory"
        if not os.access(existing, os.W_OK | os.X_OK):
            return f"permission denied on {existing}"
        return None

    @contextlib.contextmanager
    def local_copy(self, path: str) -> Iterator[str]:
        """A local folder holding what `path` (a folder in this storage) holds."""
        if self.is_local:
            yield path
            return
        with tempfile.TemporaryDirectory() as directory:
            pafs.copy_files(path, directory, source_filesystem=self.fs, destination_filesystem=pafs.LocalFileSystem())
            yield directory


def _s3_filesystem() -> pafs.S3FileSystem:
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    kwargs = {"region": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"}
    if endpoint:
        parsed = urlparse(endpoint)
        kwargs.update(endpoint_override=parsed.netloc or parsed.path, scheme=parsed.scheme or "https")
    return pafs.S3FileSystem(**kwargs)


def is_remote_cluster(address: str | None) -> bool:
    """True when `address` names a Ray cluster whose nodes may be other machines."""
    if not address or address in ("local", "auto"):
        return False  # `auto` joins a cluster started on this machine
    host = urlparse(address if "://" in address else f"ray://{address}").hostname or ""
    if host in ("localhost", socket.gethostname()):
        return False
    try:
        ip = ipaddress.ip_address(socket.gethostbyname(host))
    except (OSError, ValueError):
        return True
    return not (ip.is_loopback or _is_own_address(str(ip)))


def _is_own_address(ip: str) -> bool:
    """Only an address of this machine can be bound to."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((ip, 0))
        return True
    except OSError:
        return False
