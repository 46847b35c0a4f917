"""The local SQLite tracking store: created once, and committing without waiting for the disk."""

import sqlite3

from mlflow import MlflowClient

from orchestrator.tracking import check_reachable


def test_a_local_store_commits_in_wal_mode_and_what_it_committed_survives_its_process(tmp_path):
    path = tmp_path / "mlflow.db"
    check_reachable(f"sqlite:///{path}")
    client = MlflowClient(f"sqlite:///{path}")
    run_id = client.create_run(client.create_experiment("wal")).info.run_id
    client.set_tag(run_id, "written", "yes")

    other = sqlite3.connect(path)  # another process's view, MLflow's connections still open
    assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert other.execute("SELECT value FROM tags WHERE key = 'written'").fetchone() == ("yes",)
