"""Scale-out: a sweep on a multi-node Ray cluster (on one machine), and a sweep whose storage is
S3 (a local moto server) that resumes after its driver is killed."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
import ray
from mlflow import MlflowClient

from orchestrator.run import run_sweep
from orchestrator.search import open_study_storage

pytestmark = pytest.mark.integration

SPEC = textwrap.dedent("""\
    experiment: {experiment}
    data: {{classes: [5, 6, 7], train_per_class: 8, val_per_class: 20, image_size: 32}}
    weights: {{source: pretrain, pretrain: {{classes: [0, 1, 2], epochs: 1}}}}
    search: {{trials: {trials}, concurrent: 2, seed: 0}}
    early_stopping: {{scheduler: none, max_epochs: {epochs}}}
    space:
      backbone: test_resnet
      transfer_layers: {{type: float, low: 0.0, high: 1.0}}
      unfreeze: {{type: categorical, choices: [frozen, full]}}
      batch_size: 8
    storage: {storage}
""")


def _children(tracking_uri: str, experiment: str):
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], "tags.`orchestrator.role` = 'trial'")


@pytest.fixture
def workdir(tmp_path):
    previous = Path.cwd()
    os.chdir(tmp_path)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    ray.shutdown()
    try:
        yield tmp_path
    finally:
        os.chdir(previous)


def test_multi_node_sweep_spreads_trials_over_nodes(workdir):
    """Deterministic placement: both worker nodes are up before the sweep starts, each has one
    CPU and the head none, and the sweep's two trials are requested together, so Tune must
    reserve one node for each."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})  # like k8s: the head runs no trials
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    try:
        ray.init(address=cluster.address)  # the sweep joins this connection
        deadline = time.time() + 60
        while ray.cluster_resources().get("CPU", 0) < 2:  # both workers' CPUs visible to the scheduler
            assert time.time() < deadline, ray.cluster_resources()
            time.sleep(0.2)
        spec = workdir / "spec.yaml"
        spec.write_text(SPEC.format(experiment="nodes", trials=2, epochs=2, storage="./runs"))
        summary = run_sweep(spec, address=cluster.address)
        children = _children(summary.tracking_uri, "nodes")
        assert len(children) == 2 and summary.outcomes == {"completed": 2}
        assert summary.audit.problems == []
        nodes = [c.data.tags["ray.node_id"] for c in children]
        assert sorted(nodes) == sorted(w.node_id for w in workers)  # one trial on each worker, none on the head
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture
def s3(monkeypatch):
    """A moto S3 server on loopback with one bucket; its address and fake credentials in the env."""
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto logs every request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1")
    client.create_bucket(Bucket="sweeps")
    yield client
    server.stop()


def _sweep_process(spec: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "sweep", str(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=spec.parent,
        start_new_session=True,
    )


def test_s3_storage_sweep_resumes_after_its_driver_is_killed(workdir, s3):
    spec = workdir / "spec.yaml"
    spec.write_text(SPEC.format(experiment="s3exp", trials=6, epochs=3, storage="s3://sweeps/runs"))

    first = _sweep_process(spec)
    deadline, finished = time.time() + 240, 0
    for line in first.stdout:  # kill the driver once two trials have finished
        finished += line.startswith("[")
        if finished >= 2 or time.time() > deadline:
            break
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert finished >= 2, "the first run never finished two trials"

    second = subprocess.run(
        [sys.executable, "-m", "orchestrator", "sweep", str(spec)],
        capture_output=True,
        text=True,
        cwd=workdir,
        timeout=400,
    )
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "resumed and finished" in second.stdout

    children = _children(f"sqlite:///{workdir / 'mlflow.db'}", "s3exp")
    assert len(children) == 6 and len({c.data.tags["ray.trial_id"] for c in children}) == 6
    assert all(c.info.status == "FINISHED" and c.data.tags["outcome"] == "completed" for c in children)
    keys = [
        o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket="sweeps") for o in page["Contents"]
    ]
    assert "runs/s3exp/sweep.json" in keys
    assert any(k.startswith("runs/pretrained/test_resnet-") for k in keys)
    assert sum(k.endswith("/model.pt") for k in keys) >= 6  # every trial's final weights on S3
    assert not (workdir / "runs").exists()  # nothing of the sweep's landed on the local disk
    # A journal file cannot live on S3: the study is in the working directory, one Optuna trial per Ray trial
    study_storage = open_study_storage(str(workdir / "optuna-s3exp.journal"))
    (name,) = optuna.get_all_study_names(study_storage)
    trials = optuna.load_study(study_name=name, storage=study_storage).trials
    # a trial Optuna handed out after Ray's last snapshot is handed out again, not duplicated
    assert [t.state.name for t in trials] == ["COMPLETE"] * 6, [(t.number, t.state.name, t.params) for t in trials]
