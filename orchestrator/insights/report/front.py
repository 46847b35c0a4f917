"""The report's Pareto front, for a sweep with several objectives: the trials MLflow tags
`pareto=true` (the rule is `orchestrator.run.recording.pareto_trials`), as a table, a figure of the
first objective against each other one, report.json's `pareto` and lines for the terminal."""

from __future__ import annotations

import html
import io

from matplotlib.figure import Figure

from orchestrator.insights.report.model import Report, TrialRow, num

FIGURE = "pareto_front.png"


def front_rows(report: Report) -> list[TrialRow]:
    """The front's trials, best first by the first objective."""
    key, mode = report.objectives[0] if report.objectives else (report.metric, report.mode)
    rows = [r for r in report.trials if r.pareto and key in r.finals]
    return sorted(rows, key=lambda r: r.finals[key], reverse=mode == "max")


def front_data(report: Report) -> dict:
    return {
        "objectives": [{"metric": key, "mode": mode} for key, mode in report.objectives],
        "front": [
            {"trial_id": r.trial_id, "run_id": r.run_id, "values": r.finals, "params": r.params}
            for r in front_rows(report)
        ],
    }


def front_figures(report: Report) -> dict[str, bytes]:
    """The first objective (y) against each other one (x): completed trials, the front joined."""
    if len(report.objectives) < 2:
        return {}
    (first, first_mode), others = report.objectives[0], report.objectives[1:]
    done = [r for r in report.trials if r.outcome == "completed" and all(k in r.finals for k, _ in report.objectives)]
    if not done:
        return {}
    front = front_rows(report)
    fig = Figure(figsize=(5 * len(others), 4), layout="constrained")
    for i, (key, _) in enumerate(others):
        ax = fig.add_subplot(1, len(others), i + 1)
        ax.scatter(
            [r.finals[key] for r in done],
            [r.finals[first] for r in done],
            color="tab:blue",
            alpha=0.5,
            label="completed trials",
        )
        points = sorted((r.finals[key], r.finals[first]) for r in front)
        if points:
            ax.plot(
                *zip(*points, strict=True),
                color="tab:red",
                linewidth=1,
                marker="o",
                markerfacecolor="none",
                markersize=9,
                label="Pareto front",
            )
        ax.set_xlabel(f"final {key}")
        ax.set_ylabel(f"final {first} ({first_mode})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Pareto front (final values)" + ("" if len(others) == 1 else "; all objectives decide membership"))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return {FIGURE: buffer.getvalue()}


def front_html(report: Report, figure_html: str) -> str:
    if len(report.objectives) < 2:
        return ""
    e = html.escape
    keys = [key for key, _ in report.objectives]
    rows = front_rows(report)
    head = "".join(f"<th>{e(k)}</th>" for k in ["trial", *keys, *report.searched])
    body = "".join(
        "<tr>"
        + f"<td class='l'>{e(r.trial_id)}</td>"
        + "".join(f"<td>{e(num(r.finals.get(k)))}</td>" for k in keys)
        + "".join(f"<td class='l'>{e(num(r.params.get(k)))}</td>" for k in report.searched)
        + "</tr>"
        for r in rows
    )
    objectives = ", ".join(f"{k} ({m})" for k, m in report.objectives)
    return (
        "<h2>Pareto front</h2>"
        f"<p>{len(rows)} completed trials that no other completed trial beats in every objective ({e(objectives)}), "
        "by their final values. Each is a version of the registered model (tag <code>pareto=true</code>); the "
        "<code>champion</code> alias is on the best by the first objective.</p>"
        f"<table><tr>{head}</tr>{body}</table>{figure_html}"
    )


def front_lines(report: Report) -> list[str]:
    if len(report.objectives) < 2:
        return []
    rows = front_rows(report)
    shown = "  ".join(
        f"{r.trial_id} (" + ", ".join(f"{k}={num(r.finals.get(k))}" for k, _ in report.objectives) + ")"
        for r in rows[:4]
    )
    more = f"  ... {len(rows) - 4} more" if len(rows) > 4 else ""
    return [f"  pareto front:    {len(rows)} trials: {shown}{more}"]
