"""run_sweep's checks that need no Ray cluster: they fail before anything is started or written."""

import pytest

from orchestrator.cli import main
from orchestrator.errors import SpecError
from orchestrator.sweep import run_sweep
from tests.orchestrator.test_spec import GOOD


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
