"""`orchestrator rank` and a sweep with `search.prescreen`, on backbones pretrained here (real Ray, MLflow).

Both specs share their pretraining settings, so the sweep reuses the weights `rank` pretrained
(one cache under ./runs/pretrained) and adds only the third backbone.
"""

from __future__ import annotations

import json
import math
import os
import textwrap

import pytest
import ray
from mlflow import MlflowClient

from orchestrator.cli import main
from orchestrator.insights import KEPT_TAG, prescreen
from orchestrator.run import run_sweep
from orchestrator.spec import load_spec
from orchestrator.tracking import SweepRuns

pytestmark = pytest.mark.integration

COMMON = textwrap.dedent("""\
    data: {classes: [5, 6, 7], train_per_class: 8, val_per_class: 20, image_size: 32}
    weights: {source: pretrain, pretrain: {classes: [0, 1, 2], epochs: 1}}
    early_stopping: {max_epochs: 2, grace_period: 1, reduction_factor: 2}
    storage: ./runs
""")
RANK_SPEC = COMMON + textwrap.dedent("""\
    experiment: rank-it
    space:
      backbone: {type: categorical, choices: [test_resnet, test_convnext]}
""")
PRESCREEN_SPEC = COMMON + textwrap.dedent("""\
    experiment: prescreen-it
    search: {trials: 2, concurrent: 1, seed: 0, prescreen: {keep_top: 2}}
    space:
      backbone: {type: categorical, choices: [test_resnet, test_convnext, test_vit]}
      lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}
      batch_size: 8
""")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("rank")
    previous = os.getcwd()
    os.chdir(path)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        yield path
    finally:
        os.chdir(previous)
        ray.shutdown()


@pytest.fixture(scope="module")
def client(workdir):
    return MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")


def test_rank_prints_a_sorted_table_and_logs_a_rank_run(workdir, client, capsys):
    (workdir / "rank.yaml").write_text(RANK_SPEC)
    assert main(["rank", "rank.yaml"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.strip().startswith("test_")]
    assert [row[0] for row in rows] in (["test_resnet", "test_convnext"], ["test_convnext", "test_resnet"])
    logme = {row[0]: float(row[1]) for row in rows}
    assert list(logme.values()) == sorted(logme.values(), reverse=True)  # best first

    (run,) = client.search_runs([client.get_experiment_by_name("rank-it").experiment_id])
    assert run.info.run_name == "rank" and run.data.tags["orchestrator.kind"] == "rank"
    metrics = run.data.metrics
    assert {k: round(v, 3) for k, v in metrics.items() if k.startswith("logme.")} == {
        f"logme.{b}": v for b, v in logme.items()
    }
    # pretrained weights keep their source head (digits 0-2), so LEEP applies to every backbone
    assert {"leep.test_resnet", "leep.test_convnext"} <= set(metrics)
    assert all(math.isfinite(metrics[f"leep.{b}"]) and metrics[f"leep.{b}"] <= 0 for b in logme)  # 0 is perfect
    assert run.data.params["data.train_images"] == "24" and run.data.params["weights.source"] == "pretrain"


def test_prescreen_sweeps_only_the_top_backbones(workdir, client, capsys):
    (workdir / "prescreen.yaml").write_text(PRESCREEN_SPEC)
    summary = run_sweep("prescreen.yaml")
    assert "Prescreen: kept" in capsys.readouterr().out

    parent = client.get_run(summary.parent_run_id)
    logme = {k.removeprefix("rank.logme."): v for k, v in parent.data.metrics.items() if k.startswith("rank.logme.")}
    assert set(logme) == {"test_resnet", "test_convnext", "test_vit"}
    assert {f"rank.leep.{b}" for b in logme} <= set(parent.data.metrics)
    kept = json.loads(parent.data.tags[KEPT_TAG])
    assert sorted(kept) == sorted(sorted(logme, key=logme.get, reverse=True)[:2])

    children = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{summary.parent_run_id}'")
    assert len(children) == 2
    assert {c.data.params["backbone"] for c in children} <= set(kept)

    # The same cached weights and data give the same scores as `orchestrator rank`.
    (rank_run,) = client.search_runs([client.get_experiment_by_name("rank-it").experiment_id])
    for backbone in ("test_resnet", "test_convnext"):
        assert logme[backbone] == pytest.approx(rank_run.data.metrics[f"logme.{backbone}"], rel=1e-6)

    # Resuming reads the kept list back from the parent run instead of ranking again.
    # (No target data and no weights are given: ranking again would fail.)
    runs = SweepRuns(
        summary.tracking_uri, "prescreen-it", summary.sweep_id, 2, "val_acc", parent_run_id=summary.parent_run_id
    )
    assert prescreen(load_spec("prescreen.yaml"), runs, target=None, weights={}).backbones == kept
    assert "kept when this sweep started" in capsys.readouterr().out
