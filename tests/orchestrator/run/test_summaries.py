"""What the commands print about where results are."""

from __future__ import annotations

from types import SimpleNamespace

from orchestrator.run.summaries import format_sweeps, mlflow_links


def test_a_server_link_opens_the_runs_table_and_the_parent_run_without_credentials():
    lines = mlflow_links("https://alice:s3cret@mlflow.example.org:8443/", "7", "abc123")
    text = "\n".join(lines)
    assert "https://mlflow.example.org:8443/#/experiments/7/runs " in text
    assert "https://mlflow.example.org:8443/#/experiments/7/runs/abc123 " in text
    assert "alice" not in text and "s3cret" not in text


def test_a_local_store_link_says_how_to_start_the_ui_first():
    lines = mlflow_links("sqlite:////work/mlflow.db", "1", "abc")
    assert lines[0].startswith("MLflow UI:  mlflow ui --backend-store-uri sqlite:////work/mlflow.db")
    assert "http://127.0.0.1:5000/#/experiments/1/runs/abc" in lines[2]


def test_list_marks_the_current_sweep_and_the_live_driver():
    row = dict(experiment="e", ended=3, asked=8, objective="val_acc max", epochs=9, holder="")
    rows = [
        SimpleNamespace(**row, sweep_id="sweep-1", current=False, state="finished", best=0.5),
        SimpleNamespace(
            **{**row, "holder": "pid 42 on host h"}, sweep_id="sweep-2", current=True, state="running", best=None
        ),
    ]
    lines = format_sweeps(rows).splitlines()
    assert lines[0].split() == ["experiment", "sweep", "state", "trials", "best", "epochs", "run"]
    assert lines[1].split() == ["e", "sweep-1", "finished", "3/8", "val_acc", "0.5", "9"]
    assert lines[2].split()[:6] == ["e", "sweep-2", "*", "running", "3/8", "-"] and lines[2].endswith(
        "(pid 42 on host h)"
    )
    assert format_sweeps([]) == "No sweeps."


def test_the_end_summary_fits_a_terminal_and_names_the_model_and_where_to_look():
    from orchestrator.run.finish import SweepSummary
    from orchestrator.run.summaries import WIDTH, format_summary

    summary = SweepSummary(
        experiment="layers",
        sweep_id="sweep-1",
        resumed=False,
        wall_time_s=61.2,
        outcomes={"completed": 4, "pruned": 2},
        best_trial_id="c32816a7",
        best_config={"backbone": "mobilenetv3_small_050", "lr": 0.0021554275565447527, "dropout": 0.105191280},
        best_metrics={"epoch": 4, "val_acc": 0.42200000, "train_images_per_s": 139.9},
        model_uri="models:/m-6e64",
        registered_model="layers-best",
        model_version="1",
        optuna_storage="/w/runs/layers/optuna.journal",
        ray_path="/w/runs/layers/sweep-1",
    )
    text = format_summary(summary, ["MLflow UI:  http://mlflow:5000/#/experiments/1/runs"])
    assert "best trial:      c32816a7  val_acc 0.422 at epoch 4" in text and "train_images_per_s" not in text
    assert "backbone=mobilenetv3_small_050 dropout=0.105 lr=0.00216" in text
    assert "'layers-best' version 1 (alias champion)  models:/m-6e64" in text
    assert "optuna-dashboard /w/runs/layers/optuna.journal" in text and "MLflow UI:" in text
    assert max(len(line) for line in text.splitlines()) <= WIDTH + 20


def test_the_report_is_a_file_to_open_locally_and_a_ui_page_on_a_server():
    from orchestrator.run.summaries import report_address

    assert report_address("sqlite:///m.db", "1", "r1", "file:///w/mlartifacts/r1/artifacts") == (
        "/w/mlartifacts/r1/artifacts/report/index.html"
    )
    server = report_address("https://bob:pw@mlflow.example.org/", "4", "r1", "mlflow-artifacts:/4/r1/artifacts")
    assert server == "https://mlflow.example.org/#/experiments/4/runs/r1/artifacts/report/index.html"
