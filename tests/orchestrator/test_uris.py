"""Secrets anywhere in a URI are found (the spec refuses them) and hidden wherever a URI is shown."""

import pytest

from orchestrator.uris import base_scheme, looks_like_token, redact, redact_in, scheme, uri_secret, with_lower_scheme


@pytest.mark.parametrize(
    "uri,shown",
    [
        ("postgresql://optuna:s3cret@db:5432/optuna", "postgresql://optuna:***@db:5432/optuna"),
        ("https://al:pa%2Fss@mlflow.example.com/", "https://al:***@mlflow.example.com/"),
        ("https://al:pa/ss@mlflow.example.com/x", "https://al:***@mlflow.example.com/x"),
        ("https://al:pa#ss@mlflow.example.com", "https://al:***@mlflow.example.com"),
        ("https://ghp_0123456789abcdefghijABCDEFGHIJ012345@host/", "https://***@host/"),
        ("https://0123456789abcdef0123456789abcdef01@host", "https://***@host"),
        ("https://host/?password=hunter2&mode=ro", "https://host/?password=***&mode=ro"),
        ("https://host/?access_token=t0k&x=1;api-key=k3y", "https://host/?access_token=***&x=1;api-key=***"),
        ("s3://bucket/o?X-Amz-Signature=abc&X-Amz-Credential=AKIA/x&sslkey=/k", None),
        ("postgresql://op@db/o?sslpassword=hunter2", "postgresql://op@db/o?sslpassword=***"),
        ("https://host/path#token=abc", "https://host/path#***"),
        ("HTTPS://al:hunter2@host", "HTTPS://al:***@host"),
    ],
)
def test_redact_hides_every_kind_of_secret(uri, shown):
    redacted = redact(uri)
    if shown is not None:
        assert redacted == shown
    for secret in ("s3cret", "pa%2Fss", "pa/ss", "pa#ss", "ghp_", "0123456789abcdef", "hunter2", "t0k", "k3y", "abc"):
        assert secret not in redacted


@pytest.mark.parametrize(
    "uri",
    [
        "sqlite:////tmp/optuna.db",
        "postgresql://optuna@db/optuna?sslmode=require&sslkey=/etc/key.pem",
        "https://alice@mlflow.example.com:5000/",
        "s3://bucket/runs",
        "./runs/optuna#1.journal",  # a plain path has no query and no fragment
        "http://[::1",  # malformed, shown as written
        "",
    ],
)
def test_redact_leaves_uris_without_secrets_as_written(uri):
    assert redact(uri) == uri
    assert uri_secret(uri) is None


def test_redact_in_hides_the_secrets_as_written_and_decoded():
    uri = "https://al:hunter%2F2@mlflow.example.com/?token=tok%20en#frag"
    message = f"cannot reach {uri}: 401 for user al, password hunter/2, token tok en, fragment frag"
    shown = redact_in(message, uri)
    for secret in ("hunter%2F2", "hunter/2", "tok%20en", "tok en", "frag"):
        assert secret not in shown
    assert "mlflow.example.com" in shown and "user al" in shown
    assert redact_in("nothing secret", "sqlite:///x.db") == "nothing secret"


@pytest.mark.parametrize(
    "uri,where",
    [
        ("https://al:hunter2@host", "password"),
        ("https://ghp_abcdefghijklmnopqrstuvwxyz0123@host", "token"),
        ("https://host/?Password=x", "Password=..."),
        ("https://host/?X-Amz-Security-Token=x", "X-Amz-Security-Token=..."),
        ("https://host/?client_secret=x", "client_secret=..."),
        ("https://host/?key=x", "key=..."),
        ("https://host/?sig=x", "sig=..."),
        ("https://host/#x", "fragment"),
    ],
)
def test_uri_secret_names_where_the_secret_is(uri, where):
    assert where in uri_secret(uri)


@pytest.mark.parametrize(
    "name,token",
    [
        ("optuna", False),
        ("mlflow_sweeps_user2024", False),
        ("alice.smith", False),
        ("AKIAIOSFODNN7EXAMPLE", True),
        ("glpat-abc", True),
        ("a1B2c3D4e5F6g7H8", True),
        ("x" * 32, True),
        ("eyJhbGciOiJIUzI1NiJ9", True),
    ],
)
def test_token_like_user_names(name, token):
    assert looks_like_token(name) is token


def test_schemes_are_compared_in_lower_case():
    assert scheme("S3://bucket") == "s3" and scheme("/a/b") == "" and scheme("C:\\x") == ""
    assert base_scheme("PostgreSQL+psycopg2://db/x") == "postgresql"
    assert with_lower_scheme("SQLITE:///X.db") == "sqlite:///X.db" and with_lower_scheme("./Runs") == "./Runs"
