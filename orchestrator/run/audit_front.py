"""`orchestrator check` for a sweep with several objectives: its Pareto front, as the rule picks it
from Ray's records (`pareto_trials`), against MLflow's tags, the parent's list, the registered
versions and the report."""

from __future__ import annotations

import json

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Run

from orchestrator.environ import temporary_environ
from orchestrator.run.recording import RecordedTrial, pareto_trials
from orchestrator.tracking import PARETO, PARETO_TRIALS, TRIAL_ID, child_runs


def check_front(
    client: MlflowClient, parent: Run, recorded: list[RecordedTrial], modes, register_as, problems: list[str]
) -> None:
    front = [t.trial_id for t in pareto_trials(recorded, modes)]
    children = {run.data.tags.get(TRIAL_ID): run for run in child_runs(client, parent)}
    for trial in recorded:
        tag = children[trial.trial_id].data.tags.get(PARETO) if trial.trial_id in children else None
        expected = str(trial.trial_id in front).lower()
        if tag != expected:
            problems.append(f"trial {trial.trial_id}: tagged {PARETO}={tag!r}; the front rule says {expected}")
    listed = parent.data.tags.get(PARETO_TRIALS, "")
    names = [name for name in listed.split(",") if name]
    cut = names[-1:] == ["..."]
    if (names[:-1] if cut else names) != (front[: len(names) - 1] if cut else front):
        problems.append(f"the parent lists Pareto front {listed!r}; the rule picks {','.join(front)!r}")
    if parent.data.tags.get(f"{PARETO}.size") != str(len(front)):
        problems.append(f"the parent's {PARETO}.size is {parent.data.tags.get(f'{PARETO}.size')!r}, not {len(front)}")
    if register_as is not None:
        runs = {trial.run_id: trial.trial_id for trial in recorded if trial.trial_id in front}
        versions = client.search_model_versions(f"name = '{register_as}'")
        registered = sorted(runs[v.run_id] for v in versions if v.run_id in runs)
        if registered != sorted(front):
            problems.append(
                f"registered model {register_as!r}: versions from Pareto-front trials {registered}, "
                f"the front is {sorted(front)}"
            )
    _check_report_front(parent, front, problems)


def _check_report_front(parent: Run, front: list[str], problems: list[str]) -> None:
    try:
        with temporary_environ(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false"):
            text = mlflow.artifacts.load_text(f"runs:/{parent.info.run_id}/report/report.json")
    except Exception:  # noqa: BLE001 - no report (it may have failed; the sweep says so): nothing to compare
        return
    shown = [row.get("trial_id") for row in json.loads(text).get("pareto", {}).get("front", [])]
    if sorted(shown) != sorted(front):
        problems.append(f"report: Pareto front {sorted(shown)}, MLflow's is {sorted(front)}")
