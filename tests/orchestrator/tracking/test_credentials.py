"""MLflow credentials from the environment go only to the server the environment names."""

import os

import pytest

from orchestrator.tracking import (
    credentials_file_problem,
    credentials_for,
    may_send_credentials,
    origin,
    withhold_credentials,
)

OWN = "https://mlflow.internal.example:443/"


@pytest.mark.parametrize(
    "uri,allowed",
    [
        ("https://mlflow.internal.example", True),  # default port
        ("HTTPS://MLFLOW.internal.example:443/api", True),  # case, path
        ("https://alice@mlflow.internal.example/", True),  # a login does not change the server
        ("http://mlflow.internal.example", False),  # not over plain http
        ("https://mlflow.internal.example:8443", False),
        ("https://mlflow.internal.example.attacker.test", False),
        ("https://attacker.test/?next=https://mlflow.internal.example", False),
        ("https://mlflow.internal.example@attacker.test", False),
        ("sqlite:///mlflow.db", False),
        ("databricks", False),
        ("http://[::1", False),
    ],
)
def test_only_the_server_the_environment_names_gets_its_credentials(uri, allowed):
    assert may_send_credentials(uri, {"MLFLOW_TRACKING_URI": OWN}) is allowed


def test_without_an_environment_uri_no_server_is_named():
    assert not may_send_credentials("https://mlflow.internal.example", {})
    assert origin("https://h:99999") is None and origin("") is None


def test_credentials_are_withheld_from_another_server_with_one_line_of_warning():
    env = {
        "MLFLOW_TRACKING_URI": "https://ops:pw@mlflow.internal.example",
        "MLFLOW_TRACKING_USERNAME": "ops",
        "MLFLOW_TRACKING_PASSWORD": "hunter2",
        "OTHER": "kept",
    }
    warning = withhold_credentials("https://collector.attacker.test/?token=abc", env)
    assert "MLFLOW_TRACKING_USERNAME" not in env and "MLFLOW_TRACKING_PASSWORD" not in env and env["OTHER"] == "kept"
    assert warning.startswith("warning: not sending MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD")
    assert "collector.attacker.test" in warning and "\n" not in warning
    assert "hunter2" not in warning and "pw@" not in warning and "token=abc" not in warning


def test_credentials_stay_for_the_named_server_and_nothing_is_said():
    env = {"MLFLOW_TRACKING_URI": OWN, "MLFLOW_TRACKING_TOKEN": "t"}
    assert withhold_credentials("https://mlflow.internal.example", env) is None
    assert env["MLFLOW_TRACKING_TOKEN"] == "t"
    assert withhold_credentials("https://elsewhere.example", {"MLFLOW_TRACKING_URI": OWN}) is None  # none to withhold


def test_the_process_environment_is_restored_after_the_block(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "secret-token")
    with credentials_for("https://spec-named.example") as warning:
        assert "MLFLOW_TRACKING_TOKEN" not in os.environ
        assert "MLFLOW_TRACKING_URI is unset" in warning
    assert os.environ["MLFLOW_TRACKING_TOKEN"] == "secret-token"


def test_a_real_mlflow_client_sends_no_withheld_credential(monkeypatch):
    """MLflow reads the variables at request time, so removing them from os.environ is enough."""
    from mlflow.utils.credentials import get_default_host_creds

    monkeypatch.setenv("HOME", "/nonexistent")  # no ~/.mlflow/credentials
    monkeypatch.setenv("MLFLOW_TRACKING_URI", OWN)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "hunter2")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ops")
    with credentials_for("https://collector.attacker.test"):
        creds = get_default_host_creds("https://collector.attacker.test")
        assert creds.password is None and creds.username is None
    assert get_default_host_creds(OWN).password == "hunter2"


def test_a_password_in_mlflows_credentials_file_is_a_reason_to_refuse(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    env = {"MLFLOW_TRACKING_URI": OWN}
    assert credentials_file_problem("https://collector.attacker.test", env) is None  # no file
    (tmp_path / ".mlflow").mkdir()
    (tmp_path / ".mlflow" / "credentials").write_text("[mlflow]\nmlflow_tracking_username = ops\n")
    assert credentials_file_problem("https://collector.attacker.test", env) is None  # no password in it
    (tmp_path / ".mlflow" / "credentials").write_text("[mlflow]\nmlflow_tracking_password = hunter2\n")
    problem = credentials_file_problem("https://collector.attacker.test", env)
    assert "~/.mlflow/credentials" in problem and "collector.attacker.test" in problem and "hunter2" not in problem
    assert credentials_file_problem("https://mlflow.internal.example", env) is None
