"""The report on deployment budgets: how many trials were over one (outcome `infeasible`: they
reported their costs and never trained), and of which costs."""

from __future__ import annotations

import html

from orchestrator.insights.report.model import Report, num

INFEASIBLE = "infeasible"


def budget_data(report: Report) -> dict:
    return {"constraints": report.budgets, "outcomes": report.outcomes, "infeasible": _infeasible(report)}


def budget_line(report: Report) -> str:
    if not report.budgets:
        return ""
    limits = ", ".join(f"{name} <= {num(limit)}" for name, limit in report.budgets.items())
    n = report.outcomes.get(INFEASIBLE, 0)
    return f"{n} of {len(report.trials)} trials over budget ({limits}), none of them trained"


def budget_html(report: Report) -> str:
    line = budget_line(report)
    if not line:
        return ""
    rows = "".join(
        f"<tr><td class='l'>{html.escape(t['trial_id'])}</td><td class='l'>{html.escape(str(t['backbone']))}</td>"
        + "".join(f"<td>{html.escape(num(t['costs'].get(k)))}</td>" for k in ("total_params", "macs", "latency_ms"))
        + "</tr>"
        for t in _infeasible(report)
    )
    table = (
        "<table><tr><th class='l'>trial</th><th class='l'>backbone</th><th>params</th><th>MACs</th>"
        f"<th>latency ms</th></tr>{rows}</table>"
        if rows
        else ""
    )
    return f"<h2>Budgets</h2><p>{html.escape(line)}.</p>{table}"


def _infeasible(report: Report) -> list[dict]:
    return [
        {"trial_id": r.trial_id, "backbone": r.params.get("backbone"), "costs": _costs(r)}
        for r in report.trials
        if r.outcome == INFEASIBLE
    ]


def _costs(row) -> dict[str, float]:
    values = {"total_params": row.total_params, "macs": row.macs, "latency_ms": row.latency_ms}
    return {k: v for k, v in values.items() if v is not None}
