"""What a sweep found, and what to expect before training: backbone ranking (LogME, LEEP) and the report."""

from orchestrator.insights.rank import (
    KEPT_TAG,
    KIND_TAG,
    BackboneScore,
    RankReport,
    data_fingerprint,
    kept_backbones,
    log_rank_run,
    prescreen,
    rank_backbones,
)
from orchestrator.insights.report.analysis import asha_rungs, best_ranges, pareto_front
from orchestrator.insights.report.gather import make_report
from orchestrator.insights.report.model import Report, TrialRow, ValueRange
from orchestrator.insights.report.render import render_html, terminal_summary
from orchestrator.insights.transferability import leep, logme

__all__ = [
    "BackboneScore",
    "KEPT_TAG",
    "KIND_TAG",
    "RankReport",
    "Report",
    "TrialRow",
    "ValueRange",
    "asha_rungs",
    "best_ranges",
    "data_fingerprint",
    "kept_backbones",
    "leep",
    "log_rank_run",
    "logme",
    "make_report",
    "pareto_front",
    "prescreen",
    "rank_backbones",
    "render_html",
    "terminal_summary",
]
