"""A driver killed at every phase of a sweep's life, two drivers racing, and Ctrl-C: the sweep
always ends with every trial run and every invariant of its record holding.

The driver dies where the code says (`ORCHESTRATOR_FAULT`, see orchestrator/faults.py), not at
a moment that happened to come first on this machine. One sweep is killed at each phase in turn,
each run resuming the one before, then run to the end and checked by `orchestrator check` in a
process of its own, and against Ray's records and the Model Registry directly.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from pathlib import Path

import pytest
import ray
from mlflow import MlflowClient

from orchestrator.cli import main
from orchestrator.faults import PHASES
from orchestrator.tracking import child_runs
from tests.integration.drivers import Driver, check, checkpoints, trial_records, write_spec

pytestmark = pytest.mark.integration

COUNTED = {"result": 3, "trial-end": 2, "recording": 2}  # die at the n-th occurrence of these
TRIALS, MAX_EPOCHS = 5, 3


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ray.shutdown()
    return tmp_path


def _spec(workdir, experiment="kills"):
    return write_spec(
        workdir,
        experiment=experiment,
        trials=TRIALS,
        search_extra=", baselines: [{backbone: test_resnet, transfer_layers: 0.0, unfreeze: full}]",
        early_stopping=f"{{max_epochs: {MAX_EPOCHS}, grace_period: 1, reduction_factor: 2}}",
    )


def assert_complete_record(workdir, spec, experiment: str) -> None:
    """Independently of the sweep's own check: Ray ran every trial, each epoch once; one model version."""
    result = check(spec)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"hold for {TRIALS} trials" in result.stdout
    records = trial_records(workdir, experiment)
    ended = {t: r for t, r in records.items() if r}
    assert len(ended) >= TRIALS
    for trial, lines in ended.items():
        epochs = [line["epoch"] for line in lines]
        assert epochs == list(range(1, len(epochs) + 1)), (trial, epochs)
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    assert len(client.search_model_versions(f"name = '{experiment}-best'")) == 1


def test_a_driver_killed_at_every_phase_in_turn_loses_nothing(workdir, capsys):
    spec = _spec(workdir)
    times = []
    for phase in PHASES:
        fault = f"{phase}@{COUNTED[phase]}" if phase in COUNTED else phase
        driver = Driver(spec, env={"ORCHESTRATOR_FAULT": fault})
        times.append(driver.wait())
        assert driver.process.returncode == -9, f"{fault}: the driver was not killed there\n{driver.output()}"
        assert f"the driver dies at phase {phase!r}" in driver.output()
    assert _listed_state(spec) == "stopped"  # recorded as running, and no driver holds it: it died
    last = Driver(spec)
    times.append(last.finish())
    assert "Record check: all" in last.output()
    assert_complete_record(workdir, spec, "kills")
    with capsys.disabled():
        print(f"\n  {len(PHASES)} kills and the final run took {', '.join(f'{t:.0f}' for t in times)} s")


def test_two_drivers_on_one_experiment_one_runs_and_the_other_is_refused(workdir):
    spec = _spec(workdir, "race")  # a fresh directory: both also race to create the MLflow store
    first = Driver(spec)
    time.sleep(0.3)
    second = Driver(spec)
    first.wait(), second.wait()
    codes = sorted((d.process.returncode, d) for d in (first, second))
    (ok_code, winner), (refused_code, loser) = codes[0], codes[1]
    assert (ok_code, refused_code) == (0, 2), first.output() + "\n----\n" + second.output()
    refusal = [line for line in loser.lines if line.startswith("error:")]
    assert len(refusal) == 1 and "experiment 'race' is in use by another driver" in refusal[0]
    assert f"pid {winner.pid} on host" in refusal[0]
    assert_complete_record(workdir, spec, "race")


def test_ctrl_c_stops_the_trials_leaves_the_sweep_resumable_and_never_finished(workdir):
    spec = _spec(workdir, "ctrlc")
    driver = Driver(spec)
    driver.wait_for(lambda: checkpoints(workdir, "ctrlc") >= 1)
    assert _listed_state(spec, f"(pid {driver.pid} on host") == "running"
    driver.interrupt()
    assert driver.process.returncode == 130, driver.output()
    assert "run the same command again to resume it" in driver.output()
    state = json.loads(next((workdir / "runs" / "ctrlc").glob("sweep.json")).read_text())
    assert state["status"] == "interrupted" and _listed_state(spec) == "interrupted"
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ctrlc").experiment_id
    (parent,) = client.search_runs([experiment], "tags.`orchestrator.role` = 'sweep'")
    assert parent.info.status == "KILLED"
    assert not client.search_runs([experiment], "attributes.status = 'RUNNING'")
    assert not client.search_model_versions("name = 'ctrlc-best'")  # nothing registered from half a sweep

    Driver(spec).finish()
    assert_complete_record(workdir, spec, "ctrlc")

    # Someone deletes a trial's run in the UI: `sync` brings the same run back (the Optuna trial names
    # it), epoch by epoch, and a second sync changes nothing.
    (parent,) = client.search_runs([experiment], "tags.`orchestrator.role` = 'sweep'")
    before = _histories(client, parent)
    lost = next(c for c in child_runs(client, parent) if c.info.run_id != parent.data.tags["best.run_id"])
    client.delete_run(lost.info.run_id)
    for _ in range(2):
        assert main(["sync", str(spec)]) == 0
        assert _histories(client, parent) == before
    assert client.get_run(lost.info.run_id).info.lifecycle_stage == "active"
    assert len(client.search_model_versions("name = 'ctrlc-best'")) == 1


def _listed_state(spec: Path, holder: str = "") -> str:
    """The state `orchestrator list SPEC` shows for the experiment's current sweep."""
    listed = io.StringIO()
    with contextlib.redirect_stdout(listed):
        assert main(["list", str(spec)]) == 0
    (row,) = [line for line in listed.getvalue().splitlines() if " * " in line]
    assert holder in row, row
    return row.split()[3]


def _histories(client, parent) -> dict:
    return {
        c.data.tags["ray.trial_id"]: [(m.step, m.value) for m in client.get_metric_history(c.info.run_id, "val_acc")]
        for c in child_runs(client, parent)
    }
