"""The report's figures, from its data (drawn by orchestrator.insights.plots)."""

from __future__ import annotations

import math

from orchestrator.insights import plots
from orchestrator.insights.report.analysis import pareto_front
from orchestrator.insights.report.model import ACCURACY, TOP_CURVES, Report, TrialRow


def transferred_fraction(row: TrialRow) -> float | None:
    """k / L: the share of the backbone's body layer groups the trial transferred, as it reported them."""
    if row.transferred_groups is None or not row.body_groups:
        return None
    return row.transferred_groups / row.body_groups


def draw_figures(report: Report) -> dict[str, bytes]:
    rows = report.trials
    figures: dict[str, bytes] = {}
    curve = _transfer_curve(rows)
    if curve is not None:
        figures["transfer_curve.png"] = curve
    if report.importances.values:
        figures["importances.png"] = plots.importances(report.importances.values, report.importances.spread)
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
        k = best.transferred_groups
        figures["drift.png"] = plots.drift(best.drift, {name: _group_kind(name, k) for name in best.drift})
    # Parameters and MACs follow from the architecture: a front on them is real. Latency measured inside
    # trials that share a machine moves by tens of percent between trials, so it is not a front's axis.
    panels = {}
    for key, label in (("total_params", "parameters"), ("macs", "multiply-accumulates per image")):
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


def _transfer_curve(rows: list[TrialRow]) -> bytes | None:
    """Best val_acc against the share of body groups transferred: a line per backbone and schedule
    (completed trials), hollow points of the backbone's colour for the trials stopped early."""
    lines: dict[tuple[str, str], dict[float, float]] = {}
    stopped: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        x = transferred_fraction(row)
        if x is None or row.val_acc is None:
            continue
        backbone = f"{row.params.get('backbone', '')} (L={int(row.body_groups)})"
        if row.outcome == "completed":
            line = lines.setdefault((backbone, row.params.get("unfreeze", "frozen")), {})
            line[x] = max(line.get(x, -math.inf), row.val_acc)
        else:
            stopped.setdefault(backbone, []).append((x, row.val_acc))
    if not lines and not stopped:
        return None
    return plots.transfer_curve(
        {key: sorted(points.items()) for key, points in lines.items()},
        stopped,
        xlabel="share of the backbone's body layer groups transferred (k / L)",
        ylabel=ACCURACY,
    )


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
