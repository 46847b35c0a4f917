"""The sweep report: what a sweep found, read back from MLflow and the Optuna study.

`make_report` gathers every number through MlflowClient (the sweep's parent and child runs)
and the study, draws the figures (`orchestrator.plots`), and logs under `report/` in the
parent run a self-contained `index.html` (PNGs embedded as data URIs), each PNG, and
`report.json` with the same numbers. `Report.summary` is the terminal version.
"""

from __future__ import annotations

import base64
import functools
import html
import json
import math
import tempfile
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import optuna
import torch
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.utils.file_utils import local_file_uri_to_path
from optuna.importance import FanovaImportanceEvaluator
from optuna.trial import TrialState
from scipy.stats import spearmanr

from orchestrator import faults, plots
from orchestrator.errors import UserError
from orchestrator.rank import KIND_TAG
from orchestrator.search import open_study_storage
from orchestrator.spec import SweepSpec
from orchestrator.tracking import OUTCOME, PARENT, ROLE, SWEEP_ID, TRIAL_ID, SweepRuns
from trainables.models import create_backbone, layer_groups
from trainables.transfer import resolve_transfer_layers

ACCURACY = "val_acc"  # the transfer curve, trade-off and predicted-vs-achieved plot accuracy
LEADERBOARD_ROWS = 20  # in the HTML; the terminal shows the first TERMINAL_ROWS
TERMINAL_ROWS = 5
TOP_CURVES = 5
TOP_FRACTION = 0.25  # "best range" of a parameter: the range spanned by the top quartile of completed trials
RANK_PREFIX, RANK_RUN_PREFIX = "rank.logme.", "logme."


@dataclass
class TrialRow:
    """One trial as MLflow holds it; the leaderboard values are at its best epoch (by the objective)."""

    run_id: str
    trial_id: str
    params: dict[str, str]
    outcome: str
    epochs: int  # epochs actually run
    curve: list[tuple[int, float]]  # the objective per epoch
    best_epoch: int | None = None
    best: float | None = None  # the objective at best_epoch
    val_acc: float | None = None
    val_f1: float | None = None
    total_params: float | None = None
    latency_ms: float | None = None
    macs: float | None = None
    drift: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ValueRange:
    """Where the top trials put one parameter: [low, high] for numbers, the values seen otherwise."""

    low: float | None = None
    high: float | None = None
    values: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.values:
            return ", ".join(self.values)
        return _num(self.low) if self.low == self.high else f"{_num(self.low)} .. {_num(self.high)}"


@dataclass
class Prediction:
    """Zero-training scores (LogME) of each backbone against the accuracy each reached."""

    source: str
    scores: dict[str, float]
    achieved: dict[str, float]
    spearman: float | None
    note: str = ""


@dataclass
class Report:
    experiment: str
    sweep_id: str
    parent_run_id: str
    metric: str
    mode: str
    max_epochs: int
    searched: list[str]
    trials: list[TrialRow]  # ranked, best first
    best_run_id: str | None
    rungs: list[int]
    importances: dict[str, float]
    importance_note: str
    best_ranges: dict[str, ValueRange]
    spent_epochs: int
    full_epochs: int
    transfer_axis: str
    prediction: Prediction | None
    figures: dict[str, bytes] = field(default_factory=dict)
    location: str = ""  # where index.html was logged

    @property
    def saved_fraction(self) -> float:
        return 1 - self.spent_epochs / self.full_epochs if self.full_epochs else 0.0

    @property
    def summary(self) -> str:
        return terminal_summary(self)


# -- pure pieces ----------------------------------------------------------------------------


def asha_rungs(grace_period: int, reduction_factor: float, max_epochs: int) -> list[int]:
    """Epochs at which ASHA compares trials: grace_period * reduction_factor**i up to max_epochs."""
    rungs, epoch = [], float(grace_period)
    while epoch <= max_epochs:
        rungs.append(int(round(epoch)))
        epoch *= reduction_factor
    return rungs


def pareto_front(costs: list[float], values: list[float]) -> list[int]:
    """Indices of the points no other point beats: lower cost and higher value, one strictly."""
    c, v = np.asarray(costs, dtype=float), np.asarray(values, dtype=float)
    front = []
    for i in range(len(c)):
        dominated = (c <= c[i]) & (v >= v[i]) & ((c < c[i]) | (v > v[i]))
        if not dominated.any():
            front.append(i)
    return front


def best_ranges(trials: list[optuna.trial.FrozenTrial], params: list[str], mode: str) -> dict[str, ValueRange]:
    """For each parameter, the range its values span in the top quartile (at least 2) of the
    completed trials, by the value Optuna was told."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)]
    done.sort(key=lambda t: t.value, reverse=mode == "max")
    top = done[: max(2, math.ceil(len(done) * TOP_FRACTION))]
    ranges = {}
    for name in params:
        seen = [t.params[name] for t in top if name in t.params]
        if not seen:
            continue
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in seen):
            ranges[name] = ValueRange(low=min(seen), high=max(seen))
        else:  # categorical: the values the top trials chose, most frequent first
            ranges[name] = ValueRange(values=tuple(v for v, _ in Counter(map(str, seen)).most_common()))
    return ranges


def embed_png(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def transferred_groups(params: dict[str, str], depth: int | None) -> float | None:
    """Resolved transfer_layers of a trial (count of body groups), the raw value without a depth."""
    raw = params.get("transfer_layers")
    if params.get("weights") == "none":
        return 0.0
    if raw is None:
        return None
    value: float | int = float(raw) if any(ch in raw for ch in ".eE") else int(raw)
    if depth is None:
        return float(value)
    with warnings.catch_warnings():  # an int above the depth is clamped; the trial already warned
        warnings.simplefilter("ignore")
        return float(resolve_transfer_layers(value, depth))


# -- gathering ------------------------------------------------------------------------------


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
    metric, mode, es = spec.objective.metric, spec.objective.mode, spec.early_stopping
    sweep_id = parent.data.tags[SWEEP_ID]
    rows = gather_trials(client, parent, metric, mode)
    best_run_id = best_run_id or parent.data.tags.get("best.run_id") or (rows[0].run_id if rows else None)
    importances, note, ranges = _importances(optuna_url, sweep_id, mode)
    depths = {name: _depth(name) for name in {r.params.get("backbone", "") for r in rows} - {""}}
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
        importance_note=note,
        best_ranges=ranges,
        spent_epochs=sum(r.epochs for r in rows),
        full_epochs=len(rows) * es.max_epochs,
        transfer_axis="transferred layer groups k" if depths and None not in depths.values() else "transfer_layers",
        prediction=_prediction(client, parent, rows),
    )
    report.figures = _figures(report, depths)
    return report


def gather_trials(client: MlflowClient, parent: Run, metric: str, mode: str) -> list[TrialRow]:
    """Every child run of the sweep, ranked best first by the objective at its best epoch
    (runs without the objective last); val_acc and val_f1 are read at that epoch."""
    sign = 1 if mode == "max" else -1
    rows = []
    for run in _search_all(client, parent.info.experiment_id, f"tags.`{PARENT}` = '{parent.info.run_id}'"):
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
                drift={k.removeprefix("drift/"): v for k, v in latest.items() if k.startswith("drift/")},
            )
        )
    return sorted(rows, key=lambda r: -sign * r.best if r.best is not None else math.inf)


def _history(client: MlflowClient, run_id: str, key: str) -> dict[int, float]:
    return {m.step: m.value for m in client.get_metric_history(run_id, key)}


def _search_all(client: MlflowClient, experiment_id: str, filter_string: str) -> list[Run]:
    found, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string, page_token=token)
        found += list(page)
        token = page.token
        if not token:
            return found


def _parent_run(client: MlflowClient, runs: SweepRuns) -> Run:
    if runs.parent_run_id:
        return client.get_run(runs.parent_run_id)
    experiment = client.get_experiment_by_name(runs.experiment)
    found = (
        client.search_runs(
            [experiment.experiment_id], f"tags.`{SWEEP_ID}` = '{runs.sweep_id}' and tags.`{ROLE}` = 'sweep'"
        )
        if experiment
        else []
    )
    if not found:
        raise UserError(
            f"MLflow has no run of sweep {runs.sweep_id!r} in experiment {runs.experiment!r}; "
            "run `orchestrator sync SPEC` to replay it from Ray's records"
        )
    return found[0]


@functools.cache  # a backbone's depth never changes; sweeps and syncs in one process build it once
def _depth(name: str) -> int | None:
    """Body layer groups of a backbone, built on the meta device (no memory, no compute)."""
    try:
        with torch.device("meta"):
            return len(layer_groups(create_backbone(name, 2)).body)
    except Exception:  # noqa: BLE001 - not a timm name we can build here: plot the raw value
        return None


def _importances(
    optuna_url: str | optuna.storages.BaseStorage, sweep_id: str, mode: str
) -> tuple[dict[str, float], str, dict[str, ValueRange]]:
    """fANOVA importances over the COMPLETE trials, or why there are none."""
    try:
        storage = open_study_storage(optuna_url) if isinstance(optuna_url, str) else optuna_url
        study = optuna.load_study(study_name=sweep_id, storage=storage)
    except KeyError:
        return {}, f"the Optuna study {sweep_id!r} was not found", {}
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        return {}, f"importances need at least 2 completed trials; this sweep has {len(complete)}", {}
    if len({t.value for t in complete}) < 2:
        return {}, f"all {len(complete)} completed trials scored the same, so no parameter explains anything", {}
    try:
        importances = optuna.importance.get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0))
    except (ValueError, RuntimeError) as exc:
        return {}, f"fANOVA could not run: {exc}", {}
    importances = {k: float(v) for k, v in importances.items() if math.isfinite(v)}
    if not importances:
        return {}, "no parameter took more than one value in every completed trial", {}
    note = f"fANOVA over {len(complete)} completed trials (trials stopped early are not used)"
    return importances, note, best_ranges(complete, list(importances), mode)


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


def _figures(report: Report, depths: dict[str, int | None]) -> dict[str, bytes]:
    rows = report.trials
    figures: dict[str, bytes] = {}
    lines: dict[str, dict[float, float]] = {}
    others = []
    for row in rows:
        x = transferred_groups(row.params, depths.get(row.params.get("backbone", "")))
        if x is None or row.val_acc is None:
            continue
        if row.outcome == "completed":
            backbone = row.params.get("backbone", "")
            depth = f" (L={depths[backbone]})" if depths.get(backbone) else ""
            line = lines.setdefault(f"{backbone}{depth} / {row.params.get('unfreeze', 'frozen')}", {})
            line[x] = max(line.get(x, -math.inf), row.val_acc)
        else:
            others.append((x, row.val_acc))
    if lines or others:
        figures["transfer_curve.png"] = plots.transfer_curve(
            {k: sorted(v.items()) for k, v in lines.items()}, others, xlabel=report.transfer_axis, ylabel=ACCURACY
        )
    if report.importances:
        figures["importances.png"] = plots.importances(report.importances)
    curves = [r for r in rows if r.curve]
    if curves:
        figures["learning_curves.png"] = plots.learning_curves(
            {f"#{i + 1} {r.trial_id}": r.curve for i, r in enumerate(curves[:TOP_CURVES])},
            [r.curve for r in curves[TOP_CURVES:]],
            rungs=report.rungs,
            max_epochs=report.max_epochs,
            metric=report.metric,
        )
    best = _best_row(report)
    if best is not None and best.drift:
        depth = depths.get(best.params.get("backbone", ""))
        k = transferred_groups(best.params, depth) if depth is not None else None
        figures["drift.png"] = plots.drift(best.drift, {name: _group_kind(name, k) for name in best.drift})
    panels = {}
    for key, label in (("total_params", "parameters"), ("latency_ms", "latency per image (ms)")):
        points = [(getattr(r, key), r.val_acc) for r in rows if getattr(r, key) is not None and r.val_acc is not None]
        if points:
            panels[label] = (points, pareto_front([p[0] for p in points], [p[1] for p in points]))
    if panels:
        figures["tradeoff.png"] = plots.tradeoff(panels, ylabel=ACCURACY)
    p = report.prediction
    if p is not None and p.achieved:
        figures["predicted_vs_achieved.png"] = plots.predicted_vs_achieved(
            {b: (p.scores[b], p.achieved[b]) for b in p.achieved},
            xlabel="LogME score (predicted)",
            ylabel=f"best {ACCURACY} (achieved)",
            title="Predicted against achieved"
            + (f" (Spearman rho = {p.spearman:.2f})" if p.spearman is not None else ""),
        )
    return figures


def _best_row(report: Report) -> TrialRow | None:
    """The registered best trial, else the top of the leaderboard."""
    fallback = report.trials[0] if report.trials else None
    return next((r for r in report.trials if r.run_id == report.best_run_id), fallback)


def _group_kind(name: str, k: float | None) -> str:
    if name == "head":
        return "head"
    index = name.split(".", 1)[0]
    if k is None or not index.isdigit():
        return "transferred"  # unknown depth: the groups cannot be told apart
    return "transferred" if int(index) < k else "re-initialised"


# -- output ---------------------------------------------------------------------------------


def log_report(client: MlflowClient, report: Report, artifact_uri: str) -> None:
    """index.html, each PNG and report.json under `report/` in the parent run (its artifacts at `artifact_uri`)."""
    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        for name, png in report.figures.items():
            (folder / name).write_bytes(png)
        (folder / "index.html").write_text(render_html(report), encoding="utf-8")
        (folder / "report.json").write_text(json.dumps(report_data(report), indent=1, default=str))
        client.log_artifacts(report.parent_run_id, directory, "report")
    uri = f"{artifact_uri}/report/index.html"
    report.location = local_file_uri_to_path(uri) if urlparse(uri).scheme == "file" else uri


def report_data(report: Report) -> dict:
    """The report's numbers, as logged in report/report.json."""
    return {
        "sweep_id": report.sweep_id,
        "objective": {"metric": report.metric, "mode": report.mode},
        "best_run_id": report.best_run_id,
        "leaderboard": [{k: v for k, v in asdict(r).items() if k not in ("curve", "drift")} for r in report.trials],
        "importances": report.importances,
        "importance_note": report.importance_note,
        "best_ranges": {k: str(v) for k, v in report.best_ranges.items()},
        "compute": {"spent_epochs": report.spent_epochs, "full_epochs": report.full_epochs, "rungs": report.rungs},
        "prediction": asdict(report.prediction) if report.prediction else None,
    }


def terminal_summary(report: Report, rows: int = TERMINAL_ROWS) -> str:
    lines = ["", f"Report of sweep {report.sweep_id}"]
    for i, row in enumerate(report.trials[:rows]):
        head = "  top trials:      " if i == 0 else " " * 19
        lines.append(f"{head}{_row_line(i + 1, row, report)}")
    if report.importances:
        parts = [
            f"{name} {value:.2f}" + (f" (best {report.best_ranges[name]})" if name in report.best_ranges else "")
            for name, value in list(report.importances.items())[:4]
        ]
        lines.append(f"  importances:     {', '.join(parts)}")
    else:
        lines.append(f"  importances:     none: {report.importance_note}")
    lines.append(f"  compute:         {_compute_line(report)}")
    if report.prediction:
        p = report.prediction
        rho = f"Spearman rho = {p.spearman:.2f}" if p.spearman is not None else p.note
        lines.append(f"  predicted rank:  {rho} ({len(p.achieved)} backbones, {p.source})")
    lines.append(f"  report:          {report.location or 'report/index.html in the parent run'}")
    return "\n".join(lines)


def _row_line(rank: int, row: TrialRow, report: Report) -> str:
    config = " ".join(f"{k}={_num(row.params[k])}" for k in report.searched if k in row.params)
    star = "*" if row.run_id == report.best_run_id else " "
    scores = f"{ACCURACY}={_num(row.val_acc)} val_f1={_num(row.val_f1)}"
    if report.metric not in (ACCURACY, "val_f1"):
        scores = f"{report.metric}={_num(row.best)} " + scores
    return f"#{rank}{star}{row.trial_id}  {scores}  {config}  ({row.outcome}, {row.epochs} ep)"


def _compute_line(report: Report) -> str:
    if not report.full_epochs:
        return "no trials"
    return (
        f"{report.spent_epochs} of {report.full_epochs} epochs run "
        f"({report.saved_fraction:.0%} saved against running every trial to {report.max_epochs} epochs)"
    )


def _num(value) -> str:
    """Numbers to 4 significant digits (params arrive from MLflow as strings)."""
    if value is None:
        return "-"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if isinstance(value, str) and number.is_integer() and "." not in value and "e" not in value.lower():
        return value
    if number.is_integer() and abs(number) >= 1e4:  # parameter counts, MACs: all digits, grouped
        return f"{int(number):,}"
    return f"{number:.4g}"


# -- HTML -----------------------------------------------------------------------------------

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}img{max-width:100%}.note{color:#666}
"""


def render_html(report: Report) -> str:
    e = html.escape
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>Sweep {e(report.sweep_id)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>Sweep {e(report.sweep_id)} of experiment {e(report.experiment)}</h1>",
        f"<p>{len(report.trials)} trials; objective {e(report.metric)} ({e(report.mode)}); "
        f"MLflow parent run <code>{e(report.parent_run_id)}</code>. * marks the registered best trial "
        "(the best completed trial by its final value).</p>",
        "<h2>Leaderboard</h2>",
        _leaderboard_html(report),
        "<h2>Transfer curve</h2>",
        f"<p class='note'>Best {ACCURACY} of each completed trial against the layers it transferred, one line "
        "per backbone and unfreeze schedule (Yosinski et al., 2014); trials ASHA stopped early are hollow.</p>",
        _figure_html(report, "transfer_curve.png"),
        "<h2>Hyperparameter importances</h2>",
        _importances_html(report),
        "<h2>Learning curves and compute</h2>",
        f"<p>{e(_compute_line(report))}. ASHA rungs at epochs {e(', '.join(map(str, report.rungs)) or 'none')}.</p>",
        _figure_html(report, "learning_curves.png"),
        "<h2>Which layers moved</h2>",
        "<p class='note'>Relative weight drift ||w - w0|| / ||w0|| per layer group of the best trial at its last "
        "epoch: from the pretrained weights for transferred groups, from initialisation for the others.</p>",
        _figure_html(report, "drift.png"),
        "<h2>Accuracy against cost</h2>",
        _figure_html(report, "tradeoff.png"),
    ]
    if report.prediction is not None:
        parts += ["<h2>Predicted against achieved</h2>", _prediction_html(report)]
    parts.append("</body></html>")
    return "\n".join(parts)


def _leaderboard_html(report: Report) -> str:
    e = html.escape
    extra = [report.metric] if report.metric not in (ACCURACY, "val_f1") else []
    head = ["#", "trial", *report.searched, *extra, ACCURACY, "val_f1", "best epoch", "params", "latency ms", "outcome"]
    body = []
    for i, r in enumerate(report.trials[:LEADERBOARD_ROWS]):
        star = "*" if r.run_id == report.best_run_id else ""
        cells = [f"<td>{i + 1}{star}</td>", f"<td class='l'>{e(r.trial_id)}</td>"]
        cells += [f"<td class='l'>{e(_num(r.params.get(k)))}</td>" for k in report.searched]
        values = [r.best] if extra else []
        values += [r.val_acc, r.val_f1, r.best_epoch, r.total_params, r.latency_ms]
        cells += [f"<td>{e(_num(v))}</td>" for v in values] + [f"<td class='l'>{e(r.outcome)}</td>"]
        body.append(f"<tr>{''.join(cells)}</tr>")
    header = "".join(f"<th class='l'>{e(h)}</th>" if h in report.searched else f"<th>{e(h)}</th>" for h in head)
    cut = len(report.trials) > LEADERBOARD_ROWS
    note = f"<p class='note'>Top {LEADERBOARD_ROWS} of {len(report.trials)}.</p>" if cut else ""
    return f"<table><tr>{header}</tr>{''.join(body)}</table>{note}"


def _importances_html(report: Report) -> str:
    e = html.escape
    if not report.importances:
        return f"<p>No importances: {e(report.importance_note)}.</p>"
    rows = "".join(
        f"<tr><td class='l'>{e(k)}</td><td>{v:.3f}</td><td class='l'>{e(str(report.best_ranges.get(k, '-')))}</td></tr>"
        for k, v in report.importances.items()
    )
    return (
        f"<p class='note'>{e(report.importance_note)}. Best range: the values spanned by the top quartile "
        f"of completed trials.</p><table><tr><th class='l'>parameter</th><th>importance</th>"
        f"<th class='l'>best range</th></tr>{rows}</table>" + _figure_html(report, "importances.png")
    )


def _prediction_html(report: Report) -> str:
    e, p = html.escape, report.prediction
    rows = "".join(
        f"<tr><td class='l'>{e(b)}</td><td>{p.scores[b]:.4g}</td><td>{e(_num(p.achieved.get(b)))}</td></tr>"
        for b in sorted(p.scores, key=lambda b: -p.scores[b])
    )
    rho = f"Spearman rank correlation: {p.spearman:.3f}" if p.spearman is not None else p.note
    return (
        f"<p>Scores from the {e(p.source)}. {e(rho)}.</p><table><tr><th class='l'>backbone</th>"
        f"<th>LogME</th><th>best {ACCURACY}</th></tr>{rows}</table>" + _figure_html(report, "predicted_vs_achieved.png")
    )


def _figure_html(report: Report, name: str) -> str:
    png = report.figures.get(name)
    if png is None:
        return "<p class='note'>No data for this figure.</p>"
    return f"<p><img alt='{html.escape(name)}' src='{embed_png(png)}'></p>"
