"""The sweep report's figures: one function per figure, each taking plain data and returning PNG bytes.

Figures are built with matplotlib's object API (`Figure`, rendered by Agg) rather than pyplot, so
there is no global figure registry to leak into or close, and nothing needs a display.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from itertools import cycle

from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import EngFormatter

Point = tuple[float, float]

DPI = 100
TOP_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive")


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _label(ax, *, x: str, y: str, title: str | None = None, legend: bool = False, where: str = "best") -> None:
    """Axis labels, title, a light grid and (when something is labelled) the legend."""
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    if legend and where == "outside":  # beside the axes, where it cannot hide a point
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)
    elif legend:
        ax.legend(fontsize=8, loc=where)


def transfer_curve(
    lines: dict[tuple[str, str], list[Point]], stopped: dict[str, Sequence[Point]], *, xlabel: str, ylabel: str
) -> bytes:
    """Yosinski's figure: accuracy against the share of layers transferred. One colour per backbone,
    one line style per unfreeze schedule (completed trials); the backbone's trials that ASHA
    stopped early are hollow points of its colour."""
    fig = Figure(figsize=(10, 4.4), layout="constrained")
    ax = fig.add_subplot()
    backbones = sorted({backbone for backbone, _ in lines} | set(stopped))
    colours = dict(zip(backbones, cycle(TOP_COLOURS), strict=False))
    schedules = sorted({schedule for _, schedule in lines})
    styles = dict(zip(schedules, cycle(("-", "--", ":", "-.")), strict=False))
    for (backbone, schedule), points in sorted(lines.items()):
        xs, ys = zip(*sorted(points), strict=True)
        ax.plot(
            xs, ys, marker="o", color=colours[backbone], linestyle=styles[schedule], label=f"{backbone} / {schedule}"
        )
    for backbone, points in sorted(stopped.items()):
        xs, ys = zip(*points, strict=True)
        ax.scatter(xs, ys, facecolors="none", edgecolors=colours[backbone], label=f"{backbone}: stopped early")
    ax.set_xlim(-0.05, 1.05)
    _label(ax, x=xlabel, y=ylabel, title="Transfer curve", legend=True, where="outside")
    return _png(fig)


def importances(values: dict[str, float], spread: dict[str, float] | None = None) -> bytes:
    """Horizontal bars of fANOVA importances, most important on top, with their spread over resamples."""
    names = list(values)[::-1]
    fig = Figure(figsize=(6, 0.45 * len(names) + 1.2), layout="constrained")
    ax = fig.add_subplot()
    errors = [spread.get(n, 0.0) for n in names] if spread else None
    ax.barh(names, [values[n] for n in names], xerr=errors, color="tab:blue", ecolor="grey", capsize=3)
    ax.set_xlabel("fANOVA importance (bars: spread over resamples)")
    ax.set_xlim(0, 1)
    ax.set_title("Hyperparameter importances")
    return _png(fig)


def learning_curves(
    top: dict[str, list[Point]], rest: Sequence[list[Point]], *, rungs: Sequence[int], max_epochs: int, metric: str
) -> bytes:
    """The objective per epoch: top trials in colour, every other trial in grey, ASHA's rungs dashed."""
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for points in rest:
        ax.plot(*zip(*points, strict=True), color="lightgrey", linewidth=1)
    for (label, points), colour in zip(top.items(), cycle(TOP_COLOURS), strict=False):
        ax.plot(*zip(*points, strict=True), marker=".", color=colour, label=label)
    for i, rung in enumerate(rungs):
        ax.axvline(rung, color="black", linestyle="--", linewidth=0.8, label="ASHA rungs" if i == 0 else None)
    ax.set_xlim(0.5, max_epochs + 0.5)
    _label(ax, x="epoch", y=metric, title="Learning curves", legend=bool(top or rungs))
    return _png(fig)


def drift(values: dict[str, float], kinds: dict[str, str]) -> bytes:
    """Per-group relative weight change of one trial; `kinds[group]` colours transferred,
    re-initialised and head groups apart."""
    colours = {"transferred": "tab:blue", "re-initialised": "tab:orange", "head": "tab:green"}
    names = list(values)[::-1]  # the stem on top, the head at the bottom
    fig = Figure(figsize=(6.5, 0.3 * len(names) + 1.4), layout="constrained")
    ax = fig.add_subplot()
    ax.barh(names, [values[n] for n in names], color=[colours[kinds[n]] for n in names])
    ax.set_xlabel("relative drift ||w - w0|| / ||w0||")
    ax.set_title("Which layers moved (best trial)")
    shown = [Patch(color=colour, label=kind) for kind, colour in colours.items() if kind in kinds.values()]
    ax.legend(handles=shown, fontsize=8, loc="best")
    return _png(fig)


def tradeoff(panels: dict[str, tuple[list[Point], list[int]]], *, ylabel: str) -> bytes:
    """One panel per cost (x) against accuracy (y); each panel's Pareto front is outlined and joined."""
    fig = Figure(figsize=(5 * max(1, len(panels)), 4), layout="constrained")
    for i, (xlabel, (points, front)) in enumerate(panels.items()):
        ax = fig.add_subplot(1, len(panels), i + 1)
        xs, ys = zip(*points, strict=True) if points else ((), ())
        ax.scatter(xs, ys, color="tab:blue", alpha=0.6, label="trials")
        ordered = sorted(points[j] for j in front)
        if ordered:
            ax.step(*zip(*ordered, strict=True), where="post", color="tab:red", linewidth=1)
            ax.scatter(*zip(*ordered, strict=True), facecolors="none", edgecolors="tab:red", s=90, label="Pareto front")
        if xs and min(xs) > 0 and max(xs) / min(xs) > 20:
            ax.set_xscale("log")
        if xs and max(xs) >= 1e4:
            ax.xaxis.set_major_formatter(EngFormatter())  # 250k, not 250000 running into its neighbours
        _label(ax, x=xlabel, y=ylabel, legend=True)
    fig.suptitle("Accuracy against cost")
    return _png(fig)


def predicted_vs_achieved(points: dict[str, Point], *, xlabel: str, ylabel: str, title: str) -> bytes:
    """One labelled point per backbone: its zero-training score against the accuracy it reached."""
    fig = Figure(figsize=(6, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for name, (x, y) in points.items():
        ax.scatter([x], [y], color="tab:blue")
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    _label(ax, x=xlabel, y=ylabel, title=title)
    return _png(fig)
