"""`orchestrator check`: the sweep's record, checked against its invariants.

Ray's records (the signed manifest and each trial's result.json and checkpoint history), the
Optuna study, MLflow's runs, the Model Registry and the report must describe the same trials
and the same epochs. Each check below reads the stores through their own clients and derives
outcomes from Ray's records with the one outcome rule; nothing is taken from the sweep's own
summary. Every sweep, resume and sync runs it at its end; `check_record` returns one line per
violation, and no line when all hold.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import mlflow
import optuna
from mlflow import MlflowClient
from mlflow.entities import Run
from optuna.trial import TrialState

from orchestrator.environ import temporary_environ
from orchestrator.outcomes import INFEASIBLE, finite, summarize
from orchestrator.records import read_trial
from orchestrator.run.audit_front import check_front
from orchestrator.run.recording import ORPHANED, RecordedTrial, pick_best
from orchestrator.search import MLFLOW_RUN_ID, OPTUNA_STATE, RAY_TRIAL_ID, epoch_values, open_study_storage, violates
from orchestrator.spec import REPORTED_METRICS
from orchestrator.store import FINISHED, Manifest, Storage, read_record, read_state
from orchestrator.tracking import (
    OPTUNA_TRIAL,
    OUTCOME,
    TRIAL_ID,
    child_runs,
    parent_runs,
    run_status,
)
from trainables.budgets import COSTS

COST_METRICS = tuple(COSTS.values())
END_TIME_TOLERANCE_MS = 5_000  # a run's end against the moment the driver saw its trial end
INVARIANTS = (
    "the sweep is finished: sweep.json and the parent run say so, and every trial it asked for ran and ended",
    "one MLflow child run per Ray trial, with a unique trial id; none RUNNING; status and outcome tag as the "
    "trial's records say; end time the trial's end",
    "each child's per-epoch history equals Ray's records: epochs 1..last, no gaps, no repeats, same values",
    "one Optuna trial per Ray trial, linked both ways (ray.trial_id, mlflow.run_id, optuna.trial_number); its state "
    "the outcome; its intermediate values the objective at every epoch, the last included; a COMPLETE value the "
    "final value",
    "the parent's best trial is the completed trial with the best final objective (ties: the one that ended "
    "first); the registered version comes from that trial's run",
    "the report's numbers are MLflow's",
    "no config over a budget trained: an infeasible trial is over one and holds only its costs (epoch 0), every "
    "other trial is within every budget",
    "several objectives: the child runs tagged pareto=true, the parent's list and the registered versions are the "
    "completed trials no other dominates by their final values; the report shows that front",
)


@dataclass
class Audit:
    problems: list[str]
    trials: int

    @property
    def ok(self) -> bool:
        return not self.problems


def check_record(
    *,
    storage: Storage,
    experiment: str,
    tracking_uri: str,
    study_location: str,
    keys: tuple[str, ...],
    modes: tuple[str, ...],
    max_epochs: int,
    register_as: str | None,
    budgets: dict[str, float] | None = None,
) -> Audit:
    """`keys`, `modes`: the objectives, the first one first; `budgets`: by reported cost metric."""
    problems: list[str] = []
    metric, mode, budgets = keys[0], modes[0], budgets or {}
    record = read_record(storage, experiment)
    if record is None:
        return Audit([f"experiment {experiment!r} has no sweep in {storage.display(experiment)}"], 0)
    sweep_id = record.sweep_id
    state = read_state(storage, experiment, sweep_id)
    if state is None:
        return Audit([f"sweep {sweep_id} has no signed state: it never reached Ray's first snapshot"], 0)
    manifest = state.manifest
    client = MlflowClient(tracking_uri)
    parent = _parent(client, experiment, sweep_id, problems)
    if record.status != FINISHED:
        problems.append(f"sweep {sweep_id} is {record.status}, not finished")
    _check_manifest(manifest, problems)
    if parent is None:
        return Audit(problems, len(manifest.trials))
    if parent.info.status != "FINISHED":
        problems.append(f"the parent run {parent.info.run_id} is {parent.info.status}, not FINISHED")

    study = optuna.load_study(study_name=sweep_id, storage=open_study_storage(study_location))
    children = _children(client, parent, problems)
    recorded = []
    for trial_id, entry in manifest.trials.items():
        trial = read_trial(storage.fs, storage.path(experiment, sweep_id, trial_id))
        where = f"trial {trial_id}"
        summary = summarize(
            trial.records, errored=entry.errored, max_epochs=max_epochs, metric=metric, mode=mode, others=keys[1:]
        )
        epochs = [int(r["epoch"]) for r in trial.records if "epoch" in r]
        if summary.outcome == INFEASIBLE:  # its one record, the costs it measured before training
            if epochs != [0]:
                problems.append(f"{where}: infeasible, but Ray's records hold epochs {epochs}, not only its costs (0)")
        elif epochs != list(range(1, len(epochs) + 1)):
            problems.append(f"{where}: Ray's records hold epochs {epochs}, not 1..{len(epochs)}")
        _check_budgets(trial.records, summary.outcome, budgets, where, problems)
        child = children.pop(trial_id, None)
        if child is None:
            problems.append(f"{where}: no MLflow child run")
            continue
        recorded.append(
            RecordedTrial(
                trial_id,
                child.info.run_id,
                entry.config,
                summary.outcome,
                summary.last_epoch,
                summary.final,
                trial.records[-1] if trial.records else {},
                entry.ended_at,
                trial.final_checkpoint,
                summary.finals,
            )
        )
        if entry.ended_at is None:
            continue  # reported by _check_manifest
        _check_child(client, child, trial.records, summary, entry.ended_at, keys, where, problems)
        _check_study_trial(study, trial_id, entry.optuna_number, child, trial.records, summary, keys, problems)
    problems += [f"MLflow child run {c.info.run_id} (trial {tid}) has no Ray trial" for tid, c in children.items()]
    _check_orphaned_study_trials(study, manifest, problems)
    _check_best(client, parent, recorded, modes, register_as, problems)
    _check_report(client, parent, metric, mode, problems)
    if len(keys) > 1:
        check_front(client, parent, recorded, modes, register_as, problems)
    return Audit(problems, len(manifest.trials))


def _parent(client: MlflowClient, experiment: str, sweep_id: str, problems: list[str]) -> Run | None:
    parents = parent_runs(client, experiment, sweep_id)
    if len(parents) != 1:
        problems.append(f"sweep {sweep_id} has {len(parents)} MLflow parent runs, not 1")
        return None
    if parents[0].data.tags.get("optuna.study") != sweep_id:
        problems.append(f"the parent run does not name its Optuna study ({sweep_id!r})")
    return parents[0]


def _check_manifest(manifest: Manifest, problems: list[str]) -> None:
    if len(manifest.trials) < manifest.requested:
        problems.append(f"Ray ran {len(manifest.trials)} trials; the sweep asks for {manifest.requested}")
    unfinished = [tid for tid, entry in manifest.trials.items() if entry.ended_at is None]
    if unfinished:
        problems.append(f"{len(unfinished)} trials never ended: {', '.join(unfinished[:5])}")


def _children(client: MlflowClient, parent: Run, problems: list[str]) -> dict[str, Run]:
    runs = child_runs(client, parent)
    by_trial: dict[str, Run] = {}
    for run in runs:
        trial_id = run.data.tags.get(TRIAL_ID)
        if trial_id in by_trial:
            problems.append(
                f"trial {trial_id} has two MLflow child runs: {by_trial[trial_id].info.run_id}, {run.info.run_id}"
            )
        by_trial[trial_id] = run
    return by_trial


def _check_child(client, child: Run, records, summary, ended_at: float, keys, where, problems) -> None:
    info, tags = child.info, child.data.tags
    if info.status != run_status(summary.outcome):
        problems.append(
            f"{where}: MLflow run is {info.status}; a {summary.outcome} trial's is {run_status(summary.outcome)}"
        )
    if tags.get(OUTCOME) != summary.outcome:
        problems.append(f"{where}: outcome tag {tags.get(OUTCOME)!r}, but Ray's records say {summary.outcome!r}")
    if tags.get("stopped_at_epoch") != str(summary.last_epoch):
        problems.append(
            f"{where}: stopped_at_epoch {tags.get('stopped_at_epoch')!r}, Ray's records end at "
            f"epoch {summary.last_epoch}"
        )
    if info.end_time is None or abs(info.end_time - ended_at * 1000) > END_TIME_TOLERANCE_MS:
        problems.append(f"{where}: MLflow run ends at {info.end_time}, the trial ended at {int(ended_at * 1000)}")
    shown = (*keys, *REPORTED_METRICS, *(COST_METRICS if summary.outcome == INFEASIBLE else ()))
    for key in [key for key in dict.fromkeys(shown) if any(key in r for r in records)]:
        expected = [(int(r["epoch"]), float(r[key])) for r in records if finite(r.get(key))]
        history = sorted((m.step, m.value) for m in client.get_metric_history(info.run_id, key))
        if len(history) != len({step for step, _ in history}):
            problems.append(f"{where}: {key} is logged twice for some epoch in MLflow")
        if not _same(history, expected):
            problems.append(f"{where}: MLflow's {key} history {_steps(history)} differs from Ray's {_steps(expected)}")


def _check_study_trial(study, trial_id, number, child: Run, records, summary, keys, problems) -> None:
    where = f"trial {trial_id}"
    frozen = next((t for t in study.get_trials(deepcopy=False) if t.user_attrs.get(RAY_TRIAL_ID) == trial_id), None)
    if frozen is None:
        problems.append(f"{where}: no Optuna trial names it (user attribute {RAY_TRIAL_ID})")
        return
    if number is not None and frozen.number != number:
        problems.append(f"{where}: Optuna trial {frozen.number} names it, but it was handed trial {number}")
    if frozen.user_attrs.get(MLFLOW_RUN_ID) != child.info.run_id:
        problems.append(
            f"{where}: Optuna trial {frozen.number} names MLflow run "
            f"{frozen.user_attrs.get(MLFLOW_RUN_ID)!r}, not {child.info.run_id}"
        )
    if child.data.tags.get(OPTUNA_TRIAL) != str(frozen.number):
        problems.append(
            f"{where}: MLflow run names Optuna trial {child.data.tags.get(OPTUNA_TRIAL)!r}, not {frozen.number}"
        )
    if frozen.state != OPTUNA_STATE[summary.outcome]:
        problems.append(f"{where}: Optuna trial {frozen.number} is {frozen.state.name}; the trial {summary.outcome}")
    if violates(frozen) != (summary.outcome == INFEASIBLE):
        problems.append(
            f"{where}: Optuna's constraints say {'in' if violates(frozen) else ''}feasible; the trial {summary.outcome}"
        )
    expected = [
        (int(r["epoch"]), tuple(float(r[key]) for key in keys))
        for r in records
        if r.get("epoch", 0) >= 1 and all(finite(r.get(key)) for key in keys)
    ]
    stored = sorted(epoch_values(frozen).items())
    if not _same_vectors(stored, expected):
        problems.append(f"{where}: Optuna's values by epoch {_steps(stored)} differ from Ray's {_steps(expected)}")
    if frozen.state == TrialState.COMPLETE and not _same_vectors([(0, tuple(frozen.values))], [(0, summary.finals)]):
        problems.append(f"{where}: Optuna's values {frozen.values} are not the final {list(keys)} {summary.finals}")


def _check_orphaned_study_trials(study, manifest: Manifest, problems: list[str]) -> None:
    for trial in study.get_trials(deepcopy=False):
        if trial.user_attrs.get(RAY_TRIAL_ID) not in manifest.trials:
            reason = " (marked orphaned)" if ORPHANED in trial.user_attrs else ""
            problems.append(f"Optuna trial {trial.number} ({trial.state.name}) belongs to no Ray trial{reason}")


def _check_budgets(records: list[dict], outcome: str, budgets: dict[str, float], where, problems) -> None:
    """Costs are measured before epoch 1 (and reported unchanged every epoch), so a trial's first record
    says whether its config fits."""
    first = records[0] if records else {}
    over = [key for key, limit in budgets.items() if finite(first.get(key)) and first[key] > limit]
    if over and outcome != INFEASIBLE:
        problems.append(
            f"{where}: {over[0]} {first[over[0]]:g} is over its budget {budgets[over[0]]:g}, yet it "
            f"{outcome} ({len(records)} epochs)"
        )
    if outcome == INFEASIBLE and not over:
        problems.append(f"{where}: infeasible, but its recorded costs are within every budget")


def _check_best(client, parent: Run, recorded: list[RecordedTrial], modes, register_as, problems) -> None:
    best = pick_best(recorded, modes)
    tags = parent.data.tags
    expected = (best.trial_id, best.run_id) if best else ("", "")
    if (tags.get("best.trial_id", ""), tags.get("best.run_id", "")) != expected:
        problems.append(f"the parent names best trial {tags.get('best.trial_id')!r}, the rule picks {expected[0]!r}")
    if best is None or register_as is None:
        return
    version = tags.get("best.model_version")
    versions = client.search_model_versions(f"name = '{register_as}' and run_id = '{best.run_id}'")
    found = [str(v.version) for v in versions]
    if not version or found != [version]:
        problems.append(
            f"registered model {register_as!r}: versions from the best run {found}, the parent names {version!r}"
        )


def _check_report(client: MlflowClient, parent: Run, metric: str, mode: str, problems: list[str]) -> None:
    """The leaderboard in report/report.json against the children's MLflow histories."""
    try:
        with temporary_environ(MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false"):
            text = mlflow.artifacts.load_text(f"runs:/{parent.info.run_id}/report/report.json")
    except Exception:  # noqa: BLE001 - no report (it may have failed; the sweep says so): nothing to compare
        return
    report = json.loads(text)
    sign = 1 if mode == "max" else -1
    for row in report.get("leaderboard", []):
        history = {m.step: m.value for m in client.get_metric_history(row["run_id"], metric)}
        if not history:
            continue
        best_epoch = max(history, key=lambda e: (sign * history[e], -e))
        if row.get("best_epoch") != best_epoch or not _close(row.get("best"), history[best_epoch]):
            problems.append(
                f"report: trial {row.get('trial_id')} shows best {row.get('best')} at epoch "
                f"{row.get('best_epoch')}; MLflow has {history[best_epoch]} at {best_epoch}"
            )


def _close(a, b) -> bool:
    return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def _same_vectors(got, expected) -> bool:
    got, expected = list(got), list(expected)
    if [g[0] for g in got] != [e[0] for e in expected]:
        return False
    return all(len(g[1]) == len(e[1]) and all(map(_close, g[1], e[1])) for g, e in zip(got, expected, strict=True))


def _same(got, expected) -> bool:
    got, expected = list(got), list(expected)
    if len(got) != len(expected):
        return False
    return all(g[0] == e[0] and _close(g[1], e[1]) for g, e in zip(got, expected, strict=True))


def _steps(pairs) -> str:
    steps = [step for step, _ in pairs]
    return f"epochs {steps}" if len(steps) <= 12 else f"{len(steps)} epochs ({steps[0]}..{steps[-1]})"
