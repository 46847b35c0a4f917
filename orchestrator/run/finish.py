"""The end of a sweep: trials recorded in MLflow and Optuna, the best model registered, the report, the check."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

import optuna

from orchestrator import faults
from orchestrator.errors import UserError
from orchestrator.insights import (
    make_report,
    terminal_summary,
)
from orchestrator.run.audit import Audit, check_record
from orchestrator.run.front import record_front
from orchestrator.run.recording import RecordedTrial, pick_best, record_trials
from orchestrator.run.registration import register_trial, trial_backbone
from orchestrator.run.session import Sweep, mark_interrupted, study_location
from orchestrator.search import open_study_storage
from orchestrator.spec import SweepSpec
from orchestrator.store import (
    FINISHED,
    Manifest,
    Storage,
    write_record,
)
from orchestrator.tracking import check_reachable
from orchestrator.uris import redact
from trainables.budgets import COSTS
from trainables.data import TaskData
from trainables.finetune import evaluate_split

EXIT_INTERRUPTED = 130


class SweepInterrupted(UserError):
    """The sweep stopped before every trial ended (Ctrl-C, SIGTERM); running it again resumes it."""

    exit_code = EXIT_INTERRUPTED


@dataclass
class SweepSummary:
    experiment: str
    sweep_id: str
    resumed: bool
    wall_time_s: float
    outcomes: dict[str, int]
    best_trial_id: str | None = None
    best_config: dict[str, Any] = field(default_factory=dict)
    best_metrics: dict[str, float] = field(default_factory=dict)
    test_metrics: dict[str, float] = field(default_factory=dict)
    parent_run_id: str | None = None
    experiment_id: str | None = None
    best_run_id: str | None = None
    model_uri: str | None = None
    registered_model: str | None = None
    model_version: str | None = None
    tracking_uri: str = ""
    optuna_storage: str = ""
    ray_path: str = ""
    report: str = ""  # the sweep report's terminal summary
    audit: Audit | None = None  # the record's invariants, checked after the sweep
    front: list[str] = field(default_factory=list)  # several objectives: the Pareto front's trial ids
    timings: dict[str, float] = field(default_factory=dict)  # seconds of each end-of-sweep phase


def finish_or_explain(sweep: Sweep, manifest: Manifest, target, **kwargs) -> SweepSummary:
    """`finish_sweep`, turning an MLflow outage at the end of a finished sweep into one clear line."""
    try:
        return finish_sweep(sweep, manifest, target, **kwargs)
    except (UserError, KeyboardInterrupt):
        raise
    except Exception:
        check_reachable(
            sweep.runs.tracking_uri,
            after="The sweep's results are safe in Ray's storage; run `orchestrator sync SPEC` once MLflow is back.",
        )
        raise


def finish_sweep(
    sweep: Sweep, manifest: Manifest, target: TaskData | None, *, started, resumed, replay: bool = True
) -> SweepSummary:
    """Make MLflow and Optuna agree with Ray's records, register the best model, report, and check."""
    spec, runs = sweep.spec, sweep.runs
    clock = time.perf_counter()
    study = optuna.load_study(study_name=sweep.sweep_id, storage=open_study_storage(sweep.study_location))
    budgets = {COSTS[name]: limit for name, limit in spec.budgets.items()}
    recorded = record_trials(runs, sweep.storage, sweep.sweep_id, manifest, study, replay=replay, budgets=budgets)
    timings = {"recording": time.perf_counter() - clock}
    summary = SweepSummary(
        experiment=spec.experiment,
        sweep_id=sweep.sweep_id,
        resumed=resumed,
        wall_time_s=0.0,
        outcomes=recorded.outcomes,
        parent_run_id=runs.parent_run_id,
        experiment_id=runs.experiment_id,
        tracking_uri=runs.tracking_uri,
        optuna_storage=redact(sweep.study_location),
        ray_path=sweep.storage.display(spec.experiment, sweep.sweep_id),
        registered_model=spec.mlflow.register_best_as,
        timings=timings,
    )
    if not manifest.complete:
        mark_interrupted(sweep)
        raise SweepInterrupted(
            f"sweep {sweep.sweep_id} stopped with {len(manifest.ended)} of {manifest.requested} trials done; "
            "run the same command again to resume it"
        )
    best = pick_best(recorded.trials, spec.objective_modes)
    if best is not None:
        _describe_best(summary, best)
        if target is not None:
            clock = time.perf_counter()
            _register_best(sweep, best, target, summary)
            timings["registration"] = time.perf_counter() - clock
    if len(spec.objectives) > 1:
        summary.front = record_front(sweep, recorded.trials, best, target)
    if target is not None:
        clock = time.perf_counter()
        summary.report = report_or_warn(sweep, summary.best_run_id)
        timings["report"] = time.perf_counter() - clock
    summary.wall_time_s = time.time() - started
    runs.finish_parent(
        tags={
            "best.trial_id": summary.best_trial_id or "",
            "best.run_id": summary.best_run_id or "",
            "best.model_uri": summary.model_uri or "",
            "best.model_version": summary.model_version or "",
            **{f"trials.{k}": str(v) for k, v in summary.outcomes.items()},
        },
        metrics={
            f"best_trial.final_{spec.primary.key}": summary.best_metrics.get(spec.primary.key, float("nan")),
            "wall_time_s": summary.wall_time_s,
            "epochs_run": sum(trial.last_epoch for trial in recorded.trials),
        },
    )
    faults.reach("finished")
    sweep.record.status = FINISHED
    write_record(sweep.storage, spec.experiment, sweep.record)
    clock = time.perf_counter()
    summary.audit = audit_sweep(spec, sweep.storage, runs.tracking_uri)
    timings["audit"] = time.perf_counter() - clock
    return summary


def _describe_best(summary: SweepSummary, best: RecordedTrial) -> None:
    summary.best_trial_id, summary.best_run_id, summary.best_config = best.trial_id, best.run_id, best.config
    summary.best_metrics = {k: v for k, v in best.last.items() if k.startswith(("val_", "train_", "epoch"))}


def _register_best(sweep: Sweep, best: RecordedTrial, target: TaskData, summary: SweepSummary) -> None:
    spec, runs = sweep.spec, sweep.runs
    parent = runs.client.get_run(runs.parent_run_id).data.tags
    if parent.get("best.run_id") == best.run_id and parent.get("best.model_uri"):
        summary.model_uri = parent["best.model_uri"]  # a resumed sweep that already registered it
        summary.model_version = parent.get("best.model_version") or None
        return
    backbone = trial_backbone(sweep, best, target)
    if target.test is not None:  # held-out test/ folder: evaluated once, for the chosen model only
        split = evaluate_split(backbone, target.test, spec.data.image_size)
        summary.test_metrics = {f"test_{k}": v for k, v in split.items()}
        runs.log_summary_metrics(best.run_id, summary.test_metrics)
        runs.log_summary_metrics(runs.parent_run_id, summary.test_metrics)
    registered = register_trial(sweep, best, backbone, target, champion=True)
    summary.model_uri, summary.model_version = registered.model_uri, registered.version


def report_or_warn(sweep: Sweep, best_run_id: str | None) -> str:
    """The report's terminal summary; a report that cannot be built never fails a finished sweep."""
    try:
        return terminal_summary(make_report(sweep.spec, sweep.runs, sweep.study_location, best_run_id=best_run_id))
    except Exception as exc:  # noqa: BLE001 - the sweep's results are recorded; only the report is missing
        reason = str(exc).splitlines()[0][:300] if str(exc) else ""
        print(
            f"warning: the sweep report could not be built ({type(exc).__name__}: {reason}); "
            "retry with `orchestrator report SPEC`",
            file=sys.stderr,
            flush=True,
        )
        return ""


def audit_sweep(spec: SweepSpec, storage: Storage, tracking_uri: str) -> Audit:
    return check_record(
        storage=storage,
        experiment=spec.experiment,
        tracking_uri=tracking_uri,
        study_location=study_location(spec, storage),
        keys=spec.objective_keys,
        modes=spec.objective_modes,
        max_epochs=spec.early_stopping.max_epochs,
        register_as=spec.mlflow.register_best_as,
        budgets={COSTS[name]: limit for name, limit in spec.budgets.items()},
    )
