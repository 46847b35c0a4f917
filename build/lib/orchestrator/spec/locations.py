"""Checks on where a spec points: storage, the study database, the tracking server, data
folders and weights files. Schemes are compared case-insensitively, and a secret anywhere in a
URI is refused, since the spec is logged to MLflow and shared with whoever reads the runs."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from orchestrator.spec.models import SweepSpec
from orchestrator.uris import base_scheme, redact, scheme, uri_secret
from trainables.paths import PathProblem, checked_path, file_kind
from trainables.weight_files import weights_file_problem

STUDY_DATABASES = ("sqlite", "postgresql", "mysql")  # Optuna's RDB storage, through SQLAlchemy
# MLflow tracking stores this tool supports: a server, or a database directly. MLflow's file
# store (a plain path or file://) is deprecated in MLflow 3.
TRACKING_SCHEMES = ("http", "https", "sqlite", "postgresql", "mysql", "mssql", "databricks", "databricks-uc")
# Where each kind of secret belongs instead of the spec.
CREDENTIALS_INSTEAD = {
    "mlflow.tracking_uri": "MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN)",
    "search.study_storage": "the database driver's environment (e.g. PGPASSWORD)",
    "storage": "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
}


def check_locations(spec: SweepSpec, fail) -> None:
    """The URIs and paths of a spec, without touching the filesystem or the network."""
    _check_no_credentials(spec, fail)
    _check_storage(spec.storage, fail)
    _check_study_storage(spec.search.study_storage, fail)
    _check_tracking_uri(spec.mlflow.tracking_uri, fail)


def _check_no_credentials(spec: SweepSpec, fail) -> None:
    """The spec is logged to MLflow as an artifact, so a secret written in it would leak there."""
    uris = {
        "mlflow.tracking_uri": spec.mlflow.tracking_uri,
        "search.study_storage": spec.search.study_storage,
        "storage": spec.storage,
    }
    for field, uri in uris.items():
        where = uri_secret(uri) if uri and scheme(uri) else None
        if where:
            fail(
                field,
                f"credentials do not belong in the spec (it is logged to MLflow), and this URI has {where}; "
                f"set {CREDENTIALS_INSTEAD[field]} instead",
            )


def _check_storage(storage: str, fail) -> None:
    kind = scheme(storage)
    if kind in ("", "file"):
        local = storage[len("file://") :] if kind == "file" else storage
        if kind == "file" and re.search(r"[?#]", local):
            fail("storage", "a file:// URI takes a path only, without ? or #")
        local_path("storage", local, fail)
        return
    if kind != "s3":
        fail("storage", f"expected a local or mounted path, or s3://bucket/prefix, got {kind}://")
    bucket = storage[len("s3://") :].split("/", 1)[0]
    if not bucket:
        fail("storage", f"s3 storage needs a bucket: s3://bucket/prefix, got {redact(storage)!r}")
    if re.search(r"[?#@]", storage):
        fail(
            "storage",
            "s3 storage is s3://bucket/prefix only (no user, query or fragment); "
            "the endpoint, region and credentials go in AWS_* variables",
        )


def _check_study_storage(location: str | None, fail) -> None:
    if location is None:
        return
    if scheme(location):
        if base_scheme(location) not in STUDY_DATABASES or not re.match(r"[^:]+://.", location):
            fail(
                "search.study_storage",
                f"expected an sqlite://, postgresql:// or mysql:// URL, got {redact(location)!r}",
            )
        _check_authority("search.study_storage", location, fail, host_required=False)
        return
    if not location.endswith(".journal"):
        fail("search.study_storage", f"expected a database URL or a journal file ending in .journal, got {location!r}")
    local_path("search.study_storage", location, fail)


def _check_tracking_uri(uri: str | None, fail) -> None:
    if uri is None:
        return
    kind = base_scheme(uri) or ("databricks" if uri in ("databricks", "databricks-uc") else "")
    if kind in ("", "file"):
        fail(
            "mlflow.tracking_uri",
            "MLflow's file store is deprecated; use sqlite:///path/mlflow.db, or a server's http(s):// URL",
        )
    if kind not in TRACKING_SCHEMES:
        fail(
            "mlflow.tracking_uri",
            f"unsupported scheme {kind}://; expected one of {', '.join(s + '://' for s in TRACKING_SCHEMES)}",
        )
    if kind in ("http", "https"):
        _check_authority("mlflow.tracking_uri", uri, fail, host_required=True)


def _check_authority(field: str, uri: str, fail, *, host_required: bool) -> None:
    """The host and port parse (MLflow and SQLAlchemy would raise deep inside otherwise)."""
    try:
        parts = urlsplit(uri)
        port, host = parts.port, parts.hostname  # `port` raises for a port out of range or not a number
    except ValueError as exc:
        fail(field, f"not a valid URL ({exc}): {redact(uri)!r}")
    if host_required and not host:
        fail(field, f"needs a host: {redact(uri)!r}")
    if port == 0:
        fail(field, f"port 0 is not a port: {redact(uri)!r}")


def local_path(field: str, raw: str, fail) -> Path:
    """`raw` as a local path, refused before any system call if the OS could not take it."""
    try:
        return checked_path(raw)
    except PathProblem as exc:
        fail(field, f"the path {exc}")


def check_local_dir(field: str, raw: str, fail) -> None:
    path = local_path(field, raw, fail)
    kind = _kind(field, path, fail)
    if kind != "directory":
        fail(field, f"no such directory: {path}" if kind == "missing" else f"not a directory: {path}")


def check_weights_file(field: str, raw: str, fail, *, local_files: bool) -> None:
    """A weights file's path, and with `local_files` the file itself (kind, size, header)."""
    path = local_path(field, raw, fail)
    problem = weights_file_problem(path, look_inside=local_files)
    if problem:
        fail(field, problem)


def _kind(field: str, path: Path, fail) -> str:
    try:
        return file_kind(path)
    except PathProblem as exc:
        fail(field, f"{path} {exc}")
