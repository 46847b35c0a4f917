"""The sweep report: what a sweep found, read back from MLflow and the Optuna study.

`make_report` gathers every number through MlflowClient (the sweep's parent and child runs)
and the study (`gather`), computes what the page shows (`analysis`), draws the figures
(`figures`, with `orchestrator.insights.plots`), and logs under `report/` in the parent run a
self-contained `index.html` (PNGs embedded as data URIs), each PNG, and `report.json` with the
same numbers (`render`). `terminal_summary` is the terminal version.
"""

from orchestrator.insights.report.analysis import asha_rungs, best_ranges, pareto_front
from orchestrator.insights.report.gather import build_report, gather_trials, make_report
from orchestrator.insights.report.model import Prediction, Report, TrialRow, ValueRange
from orchestrator.insights.report.render import render_html, report_data, terminal_summary

__all__ = [
    "Prediction",
    "Report",
    "TrialRow",
    "ValueRange",
    "asha_rungs",
    "best_ranges",
    "build_report",
    "gather_trials",
    "make_report",
    "pareto_front",
    "render_html",
    "report_data",
    "terminal_summary",
]
