"""Figures, the machine they were measured on, and the JSON + Markdown that hold them."""

from __future__ import annotations

import json
import operator
import os
import platform
import statistics
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

GOAL_OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}


@dataclass
class Figure:
    """One measured figure: the value of each repeat, summarised by the median and the spread."""

    section: str
    name: str
    values: list[float]  # one per repeat (or per seed, per model, ...: `over` says which)
    unit: str = "x"
    goal: tuple[str, float] | None = None  # e.g. ("<=", 1.10), judged on the median
    over: str = "repeats"
    how: str = ""  # what exactly was timed against what

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def met(self) -> bool | None:
        if self.goal is None:
            return None
        op, threshold = self.goal
        return bool(GOAL_OPS[op](self.median, threshold))

    def summary(self) -> dict[str, Any]:
        values = self.values
        return {
            **asdict(self),
            "goal": f"{self.goal[0]} {self.goal[1]:g}" if self.goal else None,
            "median": self.median,
            "min": min(values),
            "max": max(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values),
            "met": self.met,
        }


@dataclass
class Section:
    title: str
    figures: list[Figure]
    details: dict[str, Any] = field(default_factory=dict)  # raw measurements behind the figures
    wall_s: float = 0.0
    number: int = 0  # its place in the suite (1-6), whichever sections ran


def machine() -> dict[str, Any]:
    import mlflow
    import optuna
    import ray
    import timm
    import torch

    cuda = torch.cuda.is_available()
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average": list(os.getloadavg()),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "ray": ray.__version__,
        "optuna": optuna.__version__,
        "mlflow": mlflow.__version__,
        "timm": timm.__version__,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "git_commit": _git_commit(),
    }


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, timeout=10).stdout
        return out.stdout.strip() + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _fmt(value: float, unit: str) -> str:
    if unit == "x":
        return f"{value:.2f}x" if value < 100 else f"{value:.0f}x"
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit == "/s":
        return f"{value:.0f}/s"
    if abs(value) >= 100:
        return f"{value:.0f} {unit}".strip()
    return f"{value:.3g} {unit}".strip()


def markdown(sections: list[Section], meta: dict[str, Any]) -> str:
    m = meta["machine"]
    lines = [
        f"Benchmarks, `{meta['command']}`: {meta['mode']} mode, {meta['wall_s']:.0f} s on {m['cpus_usable']} CPU "
        f"cores ({m['device']}), torch {m['torch']}, ray {m['ray']}, optuna {m['optuna']}, "
        f"load average at start {m['load_average'][0]:.1f}.",
        "",
        "| # | figure | median | spread (min-max, n) | goal | met | how it was measured |",
        "|---|---|---|---|---|---|---|",
    ]
    for section in sections:
        if "error" in section.details:
            lines.append(
                f"| {section.number} | {section.title}: FAILED | - | - | - | **no** | {section.details['error']} |"
            )
        for fig in section.figures:
            s = fig.summary()
            spread = f"{_fmt(s['min'], fig.unit)} - {_fmt(s['max'], fig.unit)}, n={s['n']} {fig.over}"
            met = {True: "yes", False: "**no**", None: "-"}[s["met"]]
            lines.append(
                f"| {section.number} | {section.title}: {fig.name} | {_fmt(s['median'], fig.unit)} | {spread} | "
                f"{s['goal'] or '-'} | {met} | {fig.how} |"
            )
    return "\n".join(lines) + "\n"


def write(sections: list[Section], meta: dict[str, Any], out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        **meta,
        "sections": [
            {
                "number": s.number,
                "title": s.title,
                "wall_s": s.wall_s,
                "figures": [f.summary() for f in s.figures],
                "details": s.details,
            }
            for s in sections
        ],
    }
    json_path, md_path = out / f"{meta['mode']}.json", out / f"{meta['mode']}.md"
    json_path.write_text(json.dumps(payload, indent=2, default=_jsonable))
    md_path.write_text(markdown(sections, meta))
    return json_path, md_path


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    if isinstance(value, set | tuple):
        return list(value)
    return str(value)
