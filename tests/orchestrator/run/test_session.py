"""run_sweep's checks that need no Ray cluster: they fail before anything is started or written."""

import pytest

from orchestrator.cli import main
from orchestrator.errors import SpecError
from orchestrator.run import run_sweep
from tests.orchestrator.spec.test_loading import GOOD


@pytest.fixture
def spec_in_empty_dir(tmp_path, monkeypatch, write_spec):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return write_spec(
        GOOD.replace(
            "weights: {source: pretrain, pretrain: {classes: [0, 1, 2, 3, 4], epochs: 1}}", "weights: {source: none}"
        )
    )


def test_local_storage_with_a_remote_cluster_is_refused(spec_in_empty_dir, tmp_path):
    with pytest.raises(SpecError, match="storage: './runs' is a local path, but the Ray cluster"):
        run_sweep(spec_in_empty_dir, address="ray-head.example.invalid:6379")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]  # nothing written


def test_unwritable_storage_is_a_one_line_error(spec_in_empty_dir, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    spec_in_empty_dir.write_text(spec_in_empty_dir.read_text() + f"storage: {blocker}/runs\n")
    assert main(["sweep", str(spec_in_empty_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ": storage: cannot write to" in err[0]
    assert not (tmp_path / "mlflow.db").exists()


def test_unreachable_mlflow_server_fails_fast_with_one_line(spec_in_empty_dir, tmp_path, capsys, monkeypatch):
    import socket
    import time

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://user:hunter2@127.0.0.1:{port}")
    started = time.monotonic()
    assert main(["sweep", str(spec_in_empty_dir)]) == 2
    assert time.monotonic() - started < 60
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is unreachable" in err[0] and "Nothing was started" in err[0]
    assert "hunter2" not in err[0] and "user:***@" in err[0]
