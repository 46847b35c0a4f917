"""The report as a terminal summary, report.json and one self-contained HTML page."""

from __future__ import annotations

import base64
import html
import json
import tempfile
import textwrap
from dataclasses import asdict
from pathlib import Path
from urllib.parse import urlparse

from mlflow import MlflowClient
from mlflow.utils.file_utils import local_file_uri_to_path

from orchestrator.insights.report.budgets import budget_data, budget_html, budget_line
from orchestrator.insights.report.front import FIGURE, front_data, front_html, front_lines
from orchestrator.insights.report.model import ACCURACY, LEADERBOARD_ROWS, TERMINAL_ROWS, Report, TrialRow, num


def embed_png(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


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
        "importances": report.importances.values,
        "importance_spread": report.importances.spread,
        "importance_trials": report.importances.trials,
        "importance_caveat": report.importances.caveat,
        "importance_note": report.importances.note,
        "conditional_importances": {
            name: {"when": when, "importance": value, "trials": n}
            for name, (when, value, n) in report.importances.within.items()
        },
        "best_ranges": {k: str(v) for k, v in report.best_ranges.items()},
        "compute": {"spent_epochs": report.spent_epochs, "full_epochs": report.full_epochs, "rungs": report.rungs},
        "prediction": asdict(report.prediction) if report.prediction else None,
        "pareto": front_data(report),
        "budgets": budget_data(report),
    }


def terminal_summary(report: Report, rows: int = TERMINAL_ROWS) -> str:
    lines = ["", f"Report of sweep {report.sweep_id} (each trial at its best epoch)"]
    for i, row in enumerate(_ranked(report)[:rows]):
        head = "  top trials:      " if i == 0 else INDENT
        first, *rest = _row_lines(i + 1, row, report)
        lines += [head + first] + [INDENT + "   " + line for line in rest]
    imp = report.importances
    if imp.values:
        parts = [
            f"{name} {value:.2f}" + (f" (best {report.best_ranges[name]})" if name in report.best_ranges else "")
            for name, value in list(imp.values.items())[:4]
        ]
        lines += _wrapped("  importances:     ", f"{', '.join(parts)}  [{imp.trials} completed trials]")
        if imp.caveat:
            lines += _wrapped(INDENT, f"not yet advice: {imp.caveat}")
    else:
        lines += _wrapped("  importances:     ", f"none: {imp.note}")
    lines.append(f"  compute:         {_compute_line(report)}")
    lines += front_lines(report)
    if budget_line(report):
        lines += _wrapped("  budgets:         ", budget_line(report))
    if report.prediction:
        p = report.prediction
        rho = f"Spearman rho = {p.spearman:.2f}" if p.spearman is not None else p.note
        lines.append(f"  predicted rank:  {rho} ({len(p.achieved)} backbones, {p.source})")
    lines.append(f"  report:          {report.location or 'report/index.html in the parent run'}")
    return "\n".join(lines)


INDENT = " " * 19
WIDTH = 120  # a terminal's width, at most


def _wrapped(head: str, text: str) -> list[str]:
    """`text` after `head`, wrapped at WIDTH with continuation lines under its start."""
    lines = textwrap.wrap(text, WIDTH - len(head), break_on_hyphens=False) or [""]
    return [head + lines[0]] + [" " * len(head) + line for line in lines[1:]]


def _row_lines(rank: int, row: TrialRow, report: Report) -> list[str]:
    """A trial's scores on one line, its searched config wrapped below."""
    mark = "  [best]" if row.run_id == report.best_run_id else "  [baseline]" if row.baseline else ""
    scores = f"{ACCURACY} {num(row.val_acc)}  val_f1 {num(row.val_f1)}"
    if report.metric not in (ACCURACY, "val_f1"):
        scores = f"{report.metric} {num(row.best)}  " + scores
    at = f"at epoch {row.best_epoch} of {row.epochs}" if row.best_epoch else f"{row.epochs} epochs"
    first = f"#{rank} {row.trial_id}  {scores} {at}, {row.outcome}{mark}"
    config = " ".join(f"{k}={num(row.params[k])}" for k in report.searched if k in row.params)
    return [first, *textwrap.wrap(config, WIDTH - len(INDENT) - 3, break_on_hyphens=False)]


def _ranked(report: Report) -> list[TrialRow]:
    """The leaderboard's trials: those that trained (infeasible ones are listed under Budgets)."""
    return [r for r in report.trials if r.outcome != "infeasible"]


def _outcome_counts(report: Report) -> str:
    return ", ".join(f"{n} {outcome}" for outcome, n in sorted(report.outcomes.items()))


def _compute_line(report: Report) -> str:
    if not report.full_epochs:
        return "no trials"
    return (
        f"{report.spent_epochs} of {report.full_epochs} epochs run "
        f"({report.saved_fraction:.0%} saved against running every trial to {report.max_epochs} epochs)"
    )


STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1180px;padding:0 1em;color:#222}
.wide{overflow-x:auto}table{border-collapse:collapse;font-size:12px}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right;white-space:nowrap}
th{background:#f3f3f3}td.l,th.l{text-align:left}img{max-width:100%}.note{color:#666}
.tag{font-size:10px;border-radius:3px;padding:0 3px;margin-left:4px;color:#fff}
.best{background:#2a7}.baseline{background:#888}.caveat{background:#fff4d6;padding:.4em .7em;border-radius:4px}
"""


def render_html(report: Report) -> str:
    e = html.escape
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>Sweep {e(report.sweep_id)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>Sweep {e(report.sweep_id)} of experiment {e(report.experiment)}</h1>",
        f"<p>{len(report.trials)} trials ({e(_outcome_counts(report))}); "
        f"objective {e(report.metric)} ({e(report.mode)}); "
        f"MLflow parent run <code>{e(report.parent_run_id)}</code>. <span class='tag best'>best</span> marks the "
        "registered best trial (the best completed trial by its final value), <span class='tag baseline'>"
        "baseline</span> the spec's baselines (reference points, run to max_epochs). Each row shows the trial "
        "at its best epoch.</p>",
        "<h2>Leaderboard</h2>",
        _leaderboard_html(report),
        "<h2>Transfer curve</h2>",
        f"<p class='note'>Best {ACCURACY} of each completed trial against the share of its backbone's body layer "
        "groups it transferred (k of L, as the trial reported them), one colour per backbone and one line style "
        "per unfreeze schedule (Yosinski et al., 2014); the trials ASHA stopped early are hollow points of their "
        "backbone's colour.</p>",
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
        "<p class='note'>Against parameters and multiply-accumulates per image, which follow from the architecture; "
        "the outlined points are the Pareto front. Latency is in the leaderboard, not here: each trial measures it "
        "once, on its own device, as the median of timed runs after a warm-up (torch.utils.benchmark), but trials "
        "that share a machine slow each other down, so the same architecture reads tens of percent apart.</p>",
        _figure_html(report, "tradeoff.png"),
        front_html(report, _figure_html(report, FIGURE)),
        budget_html(report),
    ]
    if report.prediction is not None:
        parts += ["<h2>Predicted against achieved</h2>", _prediction_html(report)]
    parts.append("</body></html>")
    return "\n".join(parts)


def _leaderboard_html(report: Report) -> str:
    e = html.escape
    extra = [report.metric] if report.metric not in (ACCURACY, "val_f1") else []
    head = ["#", "trial", *report.searched, *extra, ACCURACY, "val_f1", "epoch", "params", "latency ms", "outcome"]
    body = []
    for i, r in enumerate(_ranked(report)[:LEADERBOARD_ROWS]):
        tags = "<span class='tag best'>best</span>" if r.run_id == report.best_run_id else ""
        tags += "<span class='tag baseline'>baseline</span>" if r.baseline else ""
        cells = [f"<td>{i + 1}</td>", f"<td class='l'>{e(r.trial_id)}{tags}</td>"]
        cells += [f"<td class='l'>{e(num(r.params.get(k)))}</td>" for k in report.searched]
        values = [r.best] if extra else []
        values += [r.val_acc, r.val_f1, f"{r.best_epoch}/{r.epochs}" if r.best_epoch else None]
        values += [_short(r.total_params), r.latency_ms]
        cells += [f"<td>{e(num(v))}</td>" for v in values] + [f"<td class='l'>{e(r.outcome)}</td>"]
        body.append(f"<tr>{''.join(cells)}</tr>")
    header = "".join(f"<th class='l'>{e(h)}</th>" if h in report.searched else f"<th>{e(h)}</th>" for h in head)
    ranked = _ranked(report)
    cut = len(ranked) > LEADERBOARD_ROWS
    note = f"<p class='note'>Top {LEADERBOARD_ROWS} of {len(ranked)}.</p>" if cut else ""
    return f"<div class='wide'><table><tr>{header}</tr>{''.join(body)}</table></div>{note}"


def _short(count: float | None) -> str | None:
    """A parameter count as 1.2M / 35k: the leaderboard compares orders of magnitude."""
    if count is None:
        return None
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if count >= scale:
            return f"{count / scale:.3g}{unit}"
    return str(int(count))


def _importances_html(report: Report) -> str:
    e, imp = html.escape, report.importances
    if not imp.values:
        return f"<p>No importances: {e(imp.note)}.</p>"
    rows = "".join(
        f"<tr><td class='l'>{e(k)}</td><td>{v:.3f}</td><td>± {imp.spread.get(k, 0.0):.3f}</td>"
        f"<td class='l'>{e(str(report.best_ranges.get(k, '-')))}</td></tr>"
        for k, v in imp.values.items()
    )
    within = "".join(
        f"<tr><td class='l'>{e(name)}</td><td>{value:.3f}</td><td class='l'>within {e(when)} ({n} trials)</td></tr>"
        for name, (when, value, n) in imp.within.items()
    )
    caveat = f"<p class='caveat'>Not yet advice: {e(imp.caveat)}.</p>" if imp.caveat else ""
    conditional = (
        "<p class='note'>Conditional parameters, among the completed trials that searched them:</p>"
        f"<table><tr><th class='l'>parameter</th><th>importance</th><th class='l'>among</th></tr>{within}</table>"
        if within
        else ""
    )
    return (
        f"{caveat}<p class='note'>fANOVA over the {imp.trials} completed trials (trials stopped early are not "
        "used), on the parameters all of them have; ± is the standard deviation over resamples of those trials. "
        "Best range: the values the top quartile of completed trials used.</p>"
        "<table><tr><th class='l'>parameter</th><th>importance</th><th>spread</th><th class='l'>best range</th></tr>"
        f"{rows}</table>{conditional}" + _figure_html(report, "importances.png")
    )


def _prediction_html(report: Report) -> str:
    e, p = html.escape, report.prediction
    rows = "".join(
        f"<tr><td class='l'>{e(b)}</td><td>{p.scores[b]:.4g}</td><td>{e(num(p.achieved.get(b)))}</td></tr>"
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
