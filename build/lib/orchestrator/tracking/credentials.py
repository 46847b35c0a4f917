"""MLflow credentials from the environment go only to the server the environment names.

MLflow sends MLFLOW_TRACKING_USERNAME/PASSWORD/TOKEN to whatever tracking URI is in use, and a
spec's `mlflow.tracking_uri` overrides the environment's MLFLOW_TRACKING_URI; so a spec alone
could send the driver's credentials to any server. `withhold_credentials` removes them from the
process's environment unless the tracking URI names the same scheme, host and port as
MLFLOW_TRACKING_URI.
"""

from __future__ import annotations

import configparser
import contextlib
import os
from collections.abc import Iterator, MutableMapping
from urllib.parse import urlsplit

from orchestrator.errors import one_line
from orchestrator.uris import redact

# What MLflow's REST client sends to the server from the environment.
CREDENTIAL_VARIABLES = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(uri: str) -> tuple[str, str, int | None] | None:
    """(scheme, host, port) in lower case, with the scheme's default port; None if there is no host
    (a database file, a bare name) or the URI cannot be parsed."""
    try:
        parts = urlsplit(uri.strip())
        host, port = parts.hostname, parts.port
    except ValueError:  # a port that is not a number, an unclosed [IPv6 bracket
        return None
    if not host:
        return None
    scheme = parts.scheme.lower()
    return scheme, host.lower().rstrip("."), port if port is not None else _DEFAULT_PORTS.get(scheme)


def may_send_credentials(tracking_uri: str, environ: MutableMapping[str, str] = os.environ) -> bool:
    """Whether the environment's MLflow credentials may go to `tracking_uri`: only when it names
    the same scheme, host and port as the environment's own MLFLOW_TRACKING_URI."""
    own = origin(environ.get("MLFLOW_TRACKING_URI", ""))
    return own is not None and origin(tracking_uri) == own


def withhold_credentials(tracking_uri: str, environ: MutableMapping[str, str] = os.environ) -> str | None:
    """Removes the credential variables from `environ` (the process's, by default) unless they may
    go to `tracking_uri`. Returns a one-line warning to print when it removed any, else None."""
    present = [name for name in CREDENTIAL_VARIABLES if environ.get(name)]
    if not present or may_send_credentials(tracking_uri, environ):
        return None
    for name in present:
        del environ[name]
    named = environ.get("MLFLOW_TRACKING_URI")
    because = f"the environment's MLFLOW_TRACKING_URI is {redact(named)}" if named else "MLFLOW_TRACKING_URI is unset"
    return one_line(
        f"warning: not sending {'/'.join(present)} to {redact(tracking_uri)}: {because}; to send them there, "
        "set MLFLOW_TRACKING_URI to that server"
    )


def credentials_file_problem(tracking_uri: str, environ: MutableMapping[str, str] = os.environ) -> str | None:
    """MLflow also sends the user and password of ~/.mlflow/credentials to whatever server it talks
    to, and no environment variable can stop that. A one-line reason to refuse when that file holds
    a password and `tracking_uri` is not the server MLFLOW_TRACKING_URI names; else None."""
    if may_send_credentials(tracking_uri, environ) or not _file_has_password():
        return None
    return one_line(
        f"~/.mlflow/credentials holds a password that MLflow would send to {redact(tracking_uri)}, which "
        "MLFLOW_TRACKING_URI does not name; set MLFLOW_TRACKING_URI to that server, or move the file away"
    )


def _file_has_password() -> bool:
    config = configparser.ConfigParser()
    try:
        config.read(os.path.expanduser("~/.mlflow/credentials"))
    except (configparser.Error, OSError, UnicodeDecodeError):
        return False  # MLflow cannot read it either
    return bool(config.has_section("mlflow") and config["mlflow"].get("mlflow_tracking_password"))


@contextlib.contextmanager
def credentials_for(tracking_uri: str, environ: MutableMapping[str, str] = os.environ) -> Iterator[str | None]:
    """`withhold_credentials` for the duration of the block; the variables are restored after it.
    Yields the warning (or None)."""
    saved = {name: environ[name] for name in CREDENTIAL_VARIABLES if name in environ}
    try:
        yield withhold_credentials(tracking_uri, environ)
    finally:
        for name, value in saved.items():
            environ[name] = value
