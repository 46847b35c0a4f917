"""Reading a sweep back for its report: the parent and child runs from MLflow, the study from Optuna."""

from __future__ import annotations

import math
import warnings

from mlflow import MlflowClient
from mlflow.entities import Run
from scipy.stats import spearmanr

from orchestrator import faults
from orchestrator.errors import UserError
from orchestrator.insights.rank import KIND_TAG
from orchestrator.insights.report.analysis import asha_rungs, study_importances
from orchestrator.insights.report.figures import draw_figures
from orchestrator.insights.report.front import front_figures
from orchestrator.insights.report.model import ACCURACY, Prediction, Report, TrialRow
from orchestrator.insights.report.render import log_report
from orchestrator.spec import SweepSpec
from orchestrator.tracking import OUTCOME, PARETO, SWEEP_ID, TRIAL_ID, SweepRuns, child_runs, parent_runs

RANK_PREFIX, RANK_RUN_PREFIX = "rank.logme.", "logme."


def make_report(spec: SweepSpec, runs: SweepRuns, optuna_url: str, *, best_run_id: str | None = None) -> Report:
    """Build the sweep's report from MLflow and the study and log it to the parent run."""
    client = runs.client
    parent = _parent_run(client, runs)
    report = build_report(spec, client, parent, optuna_url, best_run_id=best_run_id)
    faults.reach("report")
    log_report(client, report, parent.info.artifact_uri)
    return report


def build_report(
    spec: SweepSpec, client: MlflowClient, parent: Run, optuna_url: str, *, best_run_id: str | None = None
) -> Report:
    metric, mode, es = spec.primary.key, spec.primary.mode, spec.early_stopping
    sweep_id = parent.data.tags[SWEEP_ID]
    rows = gather_trials(client, parent, metric, mode, others=spec.objective_keys[1:])
    best_run_id = best_run_id or parent.data.tags.get("best.run_id") or (rows[0].run_id if rows else None)
    top = rows[0].best if rows else None
    rows.sort(key=lambda r: r.best != top or r.run_id != best_run_id)  # tied at the top: the registered one first
    conditions = {name: _condition_text(param.when) for name, param in spec.searched.items() if param.when}
    importances, ranges = study_importances(optuna_url, sweep_id, mode, conditions)
    report = Report(
        experiment=spec.experiment,
        sweep_id=sweep_id,
        parent_run_id=parent.info.run_id,
        metric=metric,
        mode=mode,
        max_epochs=es.max_epochs,
        searched=list(spec.searched),
        trials=rows,
        best_run_id=best_run_id,
        rungs=asha_rungs(es.grace_period, es.reduction_factor, es.max_epochs) if es.scheduler == "asha" else [],
        importances=importances,
        best_ranges=ranges,
        spent_epochs=sum(r.epochs for r in rows),
        full_epochs=sum(r.outcome != "infeasible" for r in rows) * es.max_epochs,  # over budget: never to train
        prediction=_prediction(client, parent, rows),
        objectives=list(zip(spec.objective_keys, spec.objective_modes, strict=True)),
        budgets=spec.budgets,
    )
    report.figures = draw_figures(report)
    report.figures.update(front_figures(report))
    return report


def gather_trials(client: MlflowClient, parent: Run, metric: str, mode: str, others=()) -> list[TrialRow]:
    """Every child run of the sweep, ranked best first by the objective at its best epoch
    (runs without the objective last); val_acc and val_f1 are read at that epoch, and every
    objective (`metric`, `others`) at the last one."""
    sign = 1 if mode == "max" else -1
    rows = []
    for run in child_runs(client, parent):
        run_id, tags, latest = run.info.run_id, run.data.tags, run.data.metrics
        histories = {key: _history(client, run_id, key) for key in {metric, ACCURACY, "val_f1"}}
        curve = sorted(histories[metric].items())
        best_epoch, best = max(curve, key=lambda p: (sign * p[1], -p[0])) if curve else (None, None)
        rows.append(
            TrialRow(
                run_id=run_id,
                trial_id=tags.get(TRIAL_ID, run_id[:8]),
                params=dict(run.data.params),
                outcome=tags.get(OUTCOME, "running"),
                epochs=int(tags["stopped_at_epoch"]) if tags.get("stopped_at_epoch") else len(curve),
                curve=curve,
                best_epoch=best_epoch,
                best=best,
                val_acc=histories[ACCURACY].get(best_epoch),
                val_f1=histories["val_f1"].get(best_epoch),
                total_params=latest.get("total_params"),
                latency_ms=latest.get("latency_ms"),
                macs=latest.get("macs"),
                transferred_groups=latest.get("transferred_groups"),
                body_groups=latest.get("body_groups"),
                drift={k.removeprefix("drift/"): v for k, v in latest.items() if k.startswith("drift/")},
                finals={key: latest[key] for key in (metric, *others) if key in latest},
                pareto={"true": True, "false": False}.get(tags.get(PARETO, "")),
            )
        )
    return sorted(rows, key=lambda r: -sign * r.best if r.best is not None else math.inf)


def _history(client: MlflowClient, run_id: str, key: str) -> dict[int, float]:
    return {m.step: m.value for m in client.get_metric_history(run_id, key)}


def _parent_run(client: MlflowClient, runs: SweepRuns) -> Run:
    if runs.parent_run_id:
        return client.get_run(runs.parent_run_id)
    found = parent_runs(client, runs.experiment, runs.sweep_id)
    if not found:
        raise UserError(
            f"MLflow has no run of sweep {runs.sweep_id!r} in experiment {runs.experiment!r}; "
            "run `orchestrator sync SPEC` to replay it from Ray's records"
        )
    return found[0]


def _prediction(client: MlflowClient, parent: Run, rows: list[TrialRow]) -> Prediction | None:
    """Predicted (LogME) against achieved accuracy, if a prescreen or a `rank` run scored the backbones."""
    scores = {k.removeprefix(RANK_PREFIX): v for k, v in parent.data.metrics.items() if k.startswith(RANK_PREFIX)}
    source = "prescreen of this sweep"
    if not scores:
        found = client.search_runs(
            [parent.info.experiment_id],
            f"tags.`{KIND_TAG}` = 'rank'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if not found:
            return None
        metrics = found[0].data.metrics
        scores = {k.removeprefix(RANK_RUN_PREFIX): v for k, v in metrics.items() if k.startswith(RANK_RUN_PREFIX)}
        source = f"rank run {found[0].info.run_id}"
    if not scores:
        return None
    achieved: dict[str, float] = {}
    for row in rows:
        backbone = row.params.get("backbone")
        if backbone in scores and row.val_acc is not None:
            achieved[backbone] = max(achieved.get(backbone, -math.inf), row.val_acc)
    common = sorted(achieved)
    rho, note = None, ""
    if len(common) < 2:
        note = f"rank correlation needs at least 2 backbones that were both scored and trained; found {len(common)}"
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # constant input: scipy warns and returns nan
            value = spearmanr([scores[b] for b in common], [achieved[b] for b in common]).statistic
        rho = float(value) if math.isfinite(value) else None
        note = "" if rho is not None else "rank correlation is undefined: the scores or accuracies are all equal"
    return Prediction(source=source, scores=scores, achieved=achieved, spearman=rho, note=note)


# -- figures --------------------------------------------------------------------------------


# -- output ---------------------------------------------------------------------------------


# -- HTML -----------------------------------------------------------------------------------


def _condition_text(when: dict) -> str:
    return " and ".join(f"{k}={'/'.join(map(str, v)) if isinstance(v, list) else v}" for k, v in when.items())
