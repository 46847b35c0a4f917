"""The sweep report of a real sweep (the session's small sweep, conftest.py), read back through
MLflow's client: the artifacts are there, the PNGs are images, and every number matches MLflow."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
from mlflow import MlflowClient
from PIL import Image
from scipy.stats import spearmanr

from orchestrator.cli import main
from tests.integration.conftest import MAX_EPOCHS, TRIALS

pytestmark = pytest.mark.integration

FIGURES = {"transfer_curve.png", "learning_curves.png", "drift.png", "tradeoff.png"}


def _download(client: MlflowClient, run_id: str, tmp_path: Path) -> Path:
    return Path(client.download_artifacts(run_id, "report", str(tmp_path)))


def _check_pngs(folder: Path, page: str) -> set[str]:
    """Every PNG is a valid image and is embedded, byte for byte, in index.html."""
    embedded = {base64.b64decode(src) for src in re.findall(r"src='data:image/png;base64,([^']*)'", page)}
    pngs = {p.name for p in folder.glob("*.png")}
    for name in pngs:
        with Image.open(folder / name) as image:
            image.verify()
        assert (folder / name).read_bytes() in embedded, name
    assert len(embedded) == len(pngs)
    assert not re.search(r"src='(?!data:)", page)  # self-contained
    return pngs


def test_the_parent_run_holds_the_report_and_its_numbers_are_mlflows(small_sweep, tmp_path):
    _, summary = small_sweep
    client = MlflowClient(summary.tracking_uri)
    folder = _download(client, summary.parent_run_id, tmp_path)
    page = (folder / "index.html").read_text()
    pngs = _check_pngs(folder, page)
    assert FIGURES <= pngs

    data = json.loads((folder / "report.json").read_text())
    rows = data["leaderboard"]
    assert len(rows) == TRIALS and data["best_run_id"] == summary.best_run_id
    assert [r["val_acc"] for r in rows] == sorted((r["val_acc"] for r in rows), reverse=True)
    for row in rows:
        run = client.get_run(row["run_id"])
        assert run.data.tags["mlflow.parentRunId"] == summary.parent_run_id
        assert (row["trial_id"], row["outcome"]) == (run.data.tags["ray.trial_id"], run.data.tags["outcome"])
        assert row["epochs"] == int(run.data.tags["stopped_at_epoch"])
        accuracy = {m.step: m.value for m in client.get_metric_history(row["run_id"], "val_acc")}
        f1 = {m.step: m.value for m in client.get_metric_history(row["run_id"], "val_f1")}
        assert row["val_acc"] == max(accuracy.values())
        assert row["best_epoch"] == min(step for step, value in accuracy.items() if value == row["val_acc"])
        assert row["val_f1"] == f1[row["best_epoch"]]
        for key in ("total_params", "latency_ms", "macs"):
            assert row[key] == run.data.metrics[key]
        assert row["params"] == run.data.params
    assert data["compute"]["spent_epochs"] == sum(r["epochs"] for r in rows) < TRIALS * MAX_EPOCHS
    assert data["compute"]["full_epochs"] == TRIALS * MAX_EPOCHS

    # the page shows the same numbers: the top trial's row holds its id, val_acc and val_f1
    top = rows[0]
    html_row = next(r for r in page.split("<tr>") if f"<td class='l'>{top['trial_id']}" in r)
    assert f"<td>{top['val_acc']:.4g}</td><td>{top['val_f1']:.4g}</td>" in html_row
    # importances come with a figure, or the page says why there are none
    assert ("importances.png" in pngs) == bool(data["importances"])
    assert data["importances"] or f"No importances: {data['importance_note']}" in page
    assert data["importance_trials"] == sum(r["outcome"] == "completed" for r in data["leaderboard"])
    assert "Report of sweep" in summary.report and "compute:" in summary.report


def test_report_command_shows_predicted_against_achieved_from_a_rank_run(small_sweep, tmp_path, monkeypatch, capsys):
    workdir, summary = small_sweep
    monkeypatch.chdir(workdir)  # the spec's storage and the default MLflow store are relative to it
    client = MlflowClient(summary.tracking_uri)
    experiment = client.get_experiment_by_name("it").experiment_id
    scores = {"test_resnet": 1.5, "test_vit": -0.5}
    rank = client.create_run(experiment, tags={"orchestrator.kind": "rank"})
    for backbone, score in scores.items():
        client.log_metric(rank.info.run_id, f"logme.{backbone}", score)
    client.set_terminated(rank.info.run_id)

    assert main(["report", "spec.yaml"]) == 0
    out = capsys.readouterr().out
    sweep_id = json.loads((workdir / "runs/it/sweep.json").read_text())["sweep_id"]  # the current sweep
    query = f"tags.`orchestrator.sweep_id` = '{sweep_id}' and tags.`orchestrator.role` = 'sweep'"
    (parent,) = client.search_runs([experiment], query)
    folder = _download(client, parent.info.run_id, tmp_path)
    page = (folder / "index.html").read_text()
    assert f"Report of sweep {sweep_id}" in out
    (location,) = re.findall(r"report: +(.*)", out)
    assert Path(location).read_text() == page  # the printed location is the logged page
    assert "predicted_vs_achieved.png" in _check_pngs(folder, page)
    assert "Predicted against achieved" in page

    prediction = json.loads((folder / "report.json").read_text())["prediction"]
    assert prediction["source"] == f"rank run {rank.info.run_id}" and prediction["scores"] == scores
    achieved = {}
    for child in client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"):
        best = max(m.value for m in client.get_metric_history(child.info.run_id, "val_acc"))
        backbone = child.data.params["backbone"]
        achieved[backbone] = max(achieved.get(backbone, 0.0), best)
    assert prediction["achieved"] == achieved
    if len(achieved) == 2 and len(set(achieved.values())) == 2:
        expected = spearmanr([scores[b] for b in sorted(achieved)], [achieved[b] for b in sorted(achieved)])
        assert prediction["spearman"] == pytest.approx(expected.statistic)
        assert f"Spearman rho = {expected.statistic:.2f}" in out
