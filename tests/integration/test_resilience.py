"""Nothing lost: a trial's worker killed, a node removed, a diverging trial, and an MLflow server
that goes away mid-sweep (a driver killed at every phase: test_kills.py).

Every test runs the real thing: `orchestrator sweep` in its own process, a local Ray cluster,
Optuna and MLflow, and checks what is left with `orchestrator check` and through Ray's records,
Optuna's and MLflow's own clients.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import psutil
import pytest
import ray
import safetensors.torch
import torch
from mlflow import MlflowClient

from orchestrator.search import open_study_storage
from tests.integration.drivers import Driver, check, checkpoints, trial_records, write_spec
from trainables.models import create_backbone

pytestmark = pytest.mark.integration


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ray.shutdown()
    return tmp_path


def assert_every_trial_accounted_for(tracking_uri: str, experiment: str, trials: int, max_epochs: int) -> list:
    """`orchestrator check` passes, and, read directly: exactly `trials` child runs, unique trial ids,
    nothing RUNNING, gap-free histories, Optuna agreeing."""
    spec = Path.cwd() / f"{experiment}.yaml"
    result = check(spec)
    assert result.returncode == 0, result.stdout + result.stderr
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    (parent,) = client.search_runs([exp.experiment_id], "tags.`orchestrator.role` = 'sweep'")
    assert parent.info.status == "FINISHED"
    children = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(children) == trials
    assert len({c.data.tags["ray.trial_id"] for c in children}) == trials
    assert not client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'")
    for child in children:
        stopped, outcome = int(child.data.tags["stopped_at_epoch"]), child.data.tags["outcome"]
        for key in ("train_loss", "val_acc") if outcome in ("completed", "pruned") else ():  # diverged: all NaN
            steps = [m.step for m in client.get_metric_history(child.info.run_id, key)]
            assert sorted(steps) == list(range(1, stopped + 1)), (child.data.tags, key, steps)
        assert (stopped == max_epochs) == (outcome == "completed")

    storage = open_study_storage(parent.data.tags["optuna.storage"])
    study = optuna.load_study(study_name=parent.data.tags["optuna.study"], storage=storage)
    states = sorted(t.state.name for t in study.get_trials())
    expected = {"completed": "COMPLETE", "pruned": "PRUNED", "errored": "FAIL", "diverged": "FAIL"}
    assert states == sorted(expected[c.data.tags["outcome"]] for c in children)  # one Optuna trial per Ray trial
    return children


def _trial_workers() -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline"]) if any("ImplicitFunc" in a for a in p.info["cmdline"] or [])]


def test_a_trial_whose_worker_dies_restarts_from_its_checkpoint_in_the_same_run(workdir):
    max_epochs = 6
    spec = write_spec(
        workdir,
        experiment="crash",
        trials=1,
        concurrent=1,
        per_class=30,
        space="  backbone: test_resnet\n  transfer_layers: 1.0\n  unfreeze: full",
        early_stopping=f"{{scheduler: none, max_epochs: {max_epochs}}}",
    )
    driver = Driver(spec)
    driver.wait_for(lambda: checkpoints(workdir, "crash") >= 2 and _trial_workers())
    for worker in _trial_workers():  # as the kernel's OOM killer would
        worker.kill()
    driver.finish()

    ((trial_id, records),) = trial_records(workdir, "crash").items()
    epochs = [r["epoch"] for r in records]
    assert epochs == list(range(1, max_epochs + 1)), "resumed at the next epoch: no epoch repeated or skipped"
    restarts = [r["epoch"] for r in records if r["iterations_since_restore"] == 1]
    assert restarts[0] == 1 and len(restarts) == 2 and restarts[1] >= 3, records
    assert len({json.dumps(r["config"], sort_keys=True) for r in records}) == 1  # the same config throughout
    (child,) = assert_every_trial_accounted_for(f"sqlite:///{workdir / 'mlflow.db'}", "crash", 1, max_epochs)
    assert child.data.tags["ray.trial_id"] == trial_id and child.data.tags["outcome"] == "completed"


def test_removing_a_worker_node_mid_sweep_moves_its_trials_to_the_remaining_node(workdir):
    from ray.cluster_utils import Cluster

    max_epochs = 16  # long enough that the node goes while its trial is mid-way, however fast epochs are
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    doomed, survivor = (cluster.add_node(num_cpus=1) for _ in range(2))
    cluster.wait_for_nodes()
    try:
        spec = write_spec(
            workdir,
            experiment="nodes",
            trials=2,
            per_class=60,
            space="  backbone: test_resnet\n  transfer_layers: {type: float, low: 0.0, high: 1.0}\n  unfreeze: full",
            early_stopping=f"{{scheduler: none, max_epochs: {max_epochs}}}",
        )
        driver = Driver(spec, "--address", cluster.address)

        def doomed_trial_checkpointed() -> bool:
            ran_there = [
                trial
                for trial, records in trial_records(workdir, "nodes").items()
                if records and records[-1]["node_id"] == doomed.node_id and records[-1]["epoch"] < max_epochs - 1
            ]
            return any(list(workdir.glob(f"runs/nodes/sweep-*/{t}/checkpoint_*/history.json")) for t in ran_there)

        driver.wait_for(doomed_trial_checkpointed)
        cluster.remove_node(doomed, allow_graceful=False)
        driver.finish()
    finally:
        ray.shutdown()
        cluster.shutdown()

    moved = 0
    for records in trial_records(workdir, "nodes").values():
        assert [r["epoch"] for r in records] == list(range(1, max_epochs + 1))
        nodes = [r["node_id"] for r in records]
        if doomed.node_id in nodes:
            moved += 1
            assert nodes[-1] == survivor.node_id  # finished on the remaining node ...
            resumed_at = nodes.index(survivor.node_id)
            assert records[resumed_at]["iterations_since_restore"] == 1  # ... from its checkpoint
            assert records[resumed_at]["epoch"] > 1
    assert moved >= 1
    children = assert_every_trial_accounted_for(f"sqlite:///{workdir / 'mlflow.db'}", "nodes", 2, max_epochs)
    assert all(c.data.tags["outcome"] == "completed" for c in children)


def test_a_diverging_trial_is_stopped_as_diverged_and_the_sweep_goes_on(workdir):
    # Source weights full of NaN (a corrupt checkpoint): the trial that transfers them diverges at once;
    # the scratch trial beside it is unaffected.
    state = create_backbone("test_resnet", 3).state_dict()
    poisoned = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in state.items()}
    safetensors.torch.save_file({k: v.contiguous() for k, v in poisoned.items()}, str(workdir / "nan.safetensors"))
    spec = write_spec(
        workdir,
        experiment="nan",
        trials=2,
        algorithm="grid",
        search_extra=f", study_storage: 'sqlite:///{workdir / 'optuna.db'}'",  # the database path, end to end
        weights=f"{{source: 'file:{workdir / 'nan.safetensors'}'}}",
        space="  backbone: test_resnet\n  transfer_layers: {type: categorical, choices: [0.0, 1.0]}\n  unfreeze: full",
    )
    Driver(spec).finish()
    children = assert_every_trial_accounted_for(f"sqlite:///{workdir / 'mlflow.db'}", "nan", 2, 3)
    outcomes = {c.data.params["transfer_layers"]: c for c in children}
    assert outcomes["1.0"].data.tags["outcome"] == "diverged" and outcomes["1.0"].info.status == "FAILED"
    assert outcomes["1.0"].data.tags["stopped_at_epoch"] == "1"
    assert outcomes["0.0"].data.tags["outcome"] == "completed"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _mlflow_server(workdir: Path, port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{workdir / 'server.db'}",
            "--artifacts-destination",
            str(workdir / "artifacts"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 90
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server
        except OSError:
            assert server.poll() is None and time.time() < deadline, "mlflow server did not start"
            time.sleep(0.25)


def _stop(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGKILL)
    server.wait()


def test_an_mlflow_server_outage_mid_sweep_stops_no_training_and_loses_nothing(workdir, monkeypatch):
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    # basic-auth credentials in the environment's tracking URI, which must never leak
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://alice:{SECRET}@127.0.0.1:{port}")
    trials, max_epochs = 4, 3
    spec = write_spec(
        workdir,
        experiment="outage",
        trials=trials,
        tracking_uri="null",  # from MLFLOW_TRACKING_URI
        early_stopping=f"{{scheduler: none, max_epochs: {max_epochs}}}",
    )
    server = _mlflow_server(workdir, port)
    try:
        driver = Driver(spec)
        driver.wait_for(lambda: checkpoints(workdir, "outage") >= 1)
        _stop(server)  # the tracking server goes away while trials are training
        driver.wait_for(lambda: driver.trial_lines >= 1)  # ... and training carries on
        server = _mlflow_server(workdir, port)
        driver.process.wait(timeout=400)
        if driver.process.returncode == 2:  # the server came back only after the last trial: one line, then sync
            assert "run `orchestrator sync SPEC` once MLflow is back" in driver.output()
            synced = subprocess.run([sys.executable, "-m", "orchestrator", "sync", str(spec)], capture_output=True)
            assert synced.returncode == 0, synced.stderr[-3000:]
        else:
            driver.finish()
        children = assert_every_trial_accounted_for(uri, "outage", trials, max_epochs)
        assert_secret_never_written(workdir, driver.output(), MlflowClient(uri), children)
    finally:
        _stop(server)


SECRET = "s3cr3t-pa55"


def assert_secret_never_written(workdir: Path, output: str, client: MlflowClient, children: list) -> None:
    """Not in the console, MLflow params or tags, nor any file the sweep left (Ray's state included)."""
    assert SECRET not in output
    parent = client.get_run(children[0].data.tags["mlflow.parentRunId"])
    for run in [parent, *children]:
        assert SECRET not in json.dumps([run.data.params, run.data.tags])
    leaked = [p for p in (workdir / "runs").rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert leaked == []
