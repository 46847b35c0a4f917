import os

import pytest

from orchestrator.store import Storage, is_remote_cluster
from orchestrator.uris import redact


def test_local_storage_round_trip_and_display(tmp_path):
    storage = Storage(str(tmp_path / "runs"))
    assert storage.is_local
    assert storage.unwritable("exp") is None and not (tmp_path / "runs").exists()  # judged without writing
    storage.write_text("hello", "exp", "sweep.json")
    assert storage.exists("exp", "sweep.json") and storage.read_text("exp", "sweep.json") == "hello"
    assert not storage.exists("exp", "nothing")
    assert storage.display("exp") == str(tmp_path / "runs" / "exp")
    assert [p.name for p in (tmp_path / "runs" / "exp").iterdir()] == ["sweep.json"]  # no temp files left


def test_unwritable_local_storage_is_explained_without_writing(tmp_path):
    (tmp_path / "file").write_text("x")
    assert "is not a directory" in Storage(str(tmp_path / "file" / "runs")).unwritable("exp")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() != 0:  # root may write anywhere
        assert "permission denied" in Storage(str(locked / "runs")).unwritable("exp")


@pytest.mark.parametrize(
    "address,remote",
    [
        (None, False),
        ("auto", False),
        ("127.0.0.1:6379", False),
        ("localhost:6379", False),
        ("ray://127.0.0.1:10001", False),
        ("ray-head.example.invalid:6379", True),
        ("ray://10.255.255.1:10001", True),
    ],
)
def test_remote_cluster_detection(address, remote):
    assert is_remote_cluster(address) == remote


def test_redact_hides_passwords_tokens_secret_parameters_and_fragments():
    assert redact("postgresql://optuna:s3cret@db:5432/optuna") == "postgresql://optuna:***@db:5432/optuna"
    assert redact("sqlite:////tmp/optuna.db") == "sqlite:////tmp/optuna.db"
    assert redact("https://ghp_abcdefghijklmnopqrstuvwxyz0123@m.example.com") == "https://***@m.example.com"
    assert (
        redact("https://m.example.com/?password=x&token=y&a=1") == "https://m.example.com/?password=***&token=***&a=1"
    )
    assert redact("https://m.example.com/#secret") == "https://m.example.com/#***"
    # tests/orchestrator/test_uris.py covers the rest


def test_s3_storage_scheme_is_case_insensitive(monkeypatch):
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    storage = Storage("S3://bucket/prefix/")
    assert not storage.is_local and storage.root == "bucket/prefix" and storage.display("x") == "s3://bucket/prefix/x"


def test_file_uri_storage_is_local(tmp_path):
    storage = Storage(f"FILE://{tmp_path}/runs")
    assert storage.is_local and storage.root == str(tmp_path / "runs")
