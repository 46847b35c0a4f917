import pytest

from orchestrator.storage import Storage, is_remote_cluster, redact


def test_local_storage_round_trip_and_display(tmp_path):
    storage = Storage(str(tmp_path / "runs"))
    assert storage.is_local and storage.ray_filesystem is None
    storage.write_text("hello", "exp", "sweep.json")
    assert storage.exists("exp", "sweep.json") and storage.read_text("exp", "sweep.json") == "hello"
    assert not storage.exists("exp", "nothing")
    assert storage.display("exp") == str(tmp_path / "runs" / "exp")
    storage.check_writable("exp")
    assert [p.name for p in (tmp_path / "runs" / "exp").iterdir()] == ["sweep.json"]  # probe and temp files gone


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


def test_redact_hides_passwords_only():
    assert redact("postgresql://optuna:s3cret@db:5432/optuna") == "postgresql://optuna:***@db:5432/optuna"
    assert redact("sqlite:////tmp/optuna.db") == "sqlite:////tmp/optuna.db"
