"""Nothing lost: a driver SIGKILLed at three moments, a trial's worker killed, a node removed,
a diverging trial, and an MLflow server that goes away mid-sweep.

Every test runs the real thing: `orchestrator sweep` in its own process (so it can be killed
like a preempted machine), a local Ray cluster, Optuna on SQLite and MLflow, and checks what
is left through Ray's records, Optuna's and MLflow's own clients.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
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
from trainables.models import create_backbone

pytestmark = pytest.mark.integration

SPEC = textwrap.dedent("""\
    experiment: {experiment}
    data: {{classes: [5, 6, 7], train_per_class: {per_class}, val_per_class: 20, image_size: 32}}
    weights: {weights}
    search: {{trials: {trials}, concurrent: {concurrent}, seed: 0, algorithm: {algorithm}{search_extra}}}
    early_stopping: {early_stopping}
    space:
    {space}
      batch_size: 8
    mlflow: {{tracking_uri: {tracking_uri}, register_best_as: {experiment}-best}}
    storage: ./runs
""")
PRETRAIN = "{source: pretrain, pretrain: {classes: [0, 1, 2], epochs: 1}}"
SEARCHED = """\
  backbone: {type: categorical, choices: [test_resnet, test_vit]}
  transfer_layers: {type: float, low: 0.0, high: 1.0}
  unfreeze: {type: categorical, choices: [frozen, full]}
  lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}"""


def write_spec(workdir: Path, **fields) -> Path:
    values = {
        "experiment": "it",
        "per_class": 8,
        "weights": PRETRAIN,
        "concurrent": 2,
        "algorithm": "tpe",
        "search_extra": "",
        "early_stopping": "{scheduler: none, max_epochs: 3}",
        "space": SEARCHED,
        "tracking_uri": f"sqlite:///{workdir / 'mlflow.db'}",
        **fields,
    }
    path = workdir / "spec.yaml"
    path.write_text(SPEC.format(**values))
    return path


class Driver:
    """`orchestrator sweep` in its own process group, its output collected line by line."""

    def __init__(self, spec: Path, *extra: str):
        self.lines: list[str] = []
        self.started = time.time()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "sweep", str(spec), *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=spec.parent,
            start_new_session=True,  # so SIGKILL takes the driver and the Ray cluster it started
        )
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True)
        self._reader.start()

    @property
    def trial_lines(self) -> int:
        return sum(line.startswith("[") for line in self.lines)

    def wait_for(self, condition, timeout: float = 240) -> None:
        deadline = time.time() + timeout
        while not condition():
            assert self.process.poll() is None, "the sweep ended before the moment came:\n" + self.output()
            assert time.time() < deadline, "timed out waiting:\n" + self.output()
            time.sleep(0.2)

    def kill(self) -> float:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self._reader.join(timeout=10)
        return time.time() - self.started

    def finish(self, timeout: float = 400) -> float:
        self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        assert self.process.returncode == 0, self.output()
        return time.time() - self.started

    def output(self) -> str:
        return "".join(self.lines)[-4000:]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ray.shutdown()
    return tmp_path


def trial_records(workdir: Path, experiment: str) -> dict[str, list[dict]]:
    """Every trial's results as Ray recorded them (result.json, one line per report)."""
    records = {}
    for result in (workdir / "runs" / experiment).glob("sweep-*/*/result.json"):
        records[result.parent.name] = [json.loads(line) for line in result.read_text().splitlines() if line]
    return records


def checkpoints(workdir: Path, experiment: str) -> int:
    return len(list((workdir / "runs" / experiment).glob("sweep-*/*/checkpoint_*/trial.pt")))


def assert_every_trial_accounted_for(tracking_uri: str, experiment: str, trials: int, max_epochs: int) -> list:
    """Exactly `trials` child runs, unique trial ids, nothing RUNNING, gap-free histories, Optuna agreeing."""
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


def test_driver_killed_at_three_moments_and_rerun_each_time_loses_nothing(workdir, capsys):
    trials, max_epochs = 6, 4
    spec = write_spec(
        workdir,
        trials=trials,
        search_extra=", baselines: [{backbone: test_resnet, transfer_layers: 0.0, unfreeze: full}]",
        early_stopping=f"{{max_epochs: {max_epochs}, grace_period: 1, reduction_factor: 2}}",
    )
    times = []
    # 1. mid-trial: a trial has checkpointed its first epoch
    first = Driver(spec)
    first.wait_for(lambda: checkpoints(workdir, "it") >= 1)
    times.append(first.kill())
    # 2. between trials: two more trials have finished
    second = Driver(spec)
    second.wait_for(lambda: second.trial_lines >= 2)
    times.append(second.kill())
    # 3. after every trial, while the end pass writes MLflow and registers the best model
    third = Driver(spec)
    third.wait_for(lambda: any(line.startswith("All trials done") for line in third.lines))
    times.append(third.kill())

    last = Driver(spec)
    times.append(last.finish())
    assert "resumed and finished" in last.output()
    children = assert_every_trial_accounted_for(f"sqlite:///{workdir / 'mlflow.db'}", "it", trials, max_epochs)
    assert {c.data.tags["outcome"] for c in children} <= {"completed", "pruned"}
    for trial, records in trial_records(workdir, "it").items():  # Ray's own record: each epoch once, in order
        epochs = [r["epoch"] for r in records]
        assert epochs == list(range(1, len(epochs) + 1)), (trial, epochs)
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    assert len(client.search_model_versions("name = 'it-best'")) == 1
    with capsys.disabled():
        print(f"\n  kill-and-resume runs took {', '.join(f'{t:.0f} s' for t in times)}")


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

    max_epochs = 6
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    doomed, survivor = (cluster.add_node(num_cpus=1) for _ in range(2))
    cluster.wait_for_nodes()
    try:
        spec = write_spec(
            workdir,
            experiment="nodes",
            trials=2,
            per_class=30,
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
            return any(list(workdir.glob(f"runs/nodes/sweep-*/{t}/checkpoint_*/trial.pt")) for t in ran_there)

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
            sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{workdir / 'server.db'}",
            "--artifacts-destination", str(workdir / "artifacts"),
        ],  # fmt: skip
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
