"""Runs the chosen sections in one process, one after the other, and writes the results."""

from __future__ import annotations

import importlib
import os
import time
import traceback
from pathlib import Path

from benchmarks.profiles import Profile
from benchmarks.report import Section, machine, write

# In the order of the issue; the cheap ones last, so the long ones meet the machine as it was at the start.
SECTIONS = {
    "overhead": "benchmarks.overhead",
    "search": "benchmarks.search_replay",
    "cache": "benchmarks.cache",
    "step": "benchmarks.step",
    "searcher": "benchmarks.searcher",
    "tracking": "benchmarks.tracking",
    "scale": "benchmarks.scale",
    "images": "benchmarks.images",
    "checkpoints": "benchmarks.checkpoints",
}
DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def run_benchmarks(
    profile: Profile, *, sections: list[str] | None = None, out: Path = DEFAULT_OUT, command: str = ""
) -> tuple[list[Section], Path, Path]:
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    names = sections or list(SECTIONS)
    facts = machine()
    started = time.time()
    results: list[Section] = []
    for name in names:
        print(f"[benchmarks] {name} ...", flush=True)
        section_started = time.time()
        try:
            section = importlib.import_module(SECTIONS[name]).run(profile)
        except Exception as exc:  # noqa: BLE001 - one broken section must not hide the others' figures
            traceback.print_exc()
            section = Section(name, [], {"error": f"{type(exc).__name__}: {exc}"})
        section.wall_s = time.time() - section_started
        section.number = list(SECTIONS).index(name) + 1
        results.append(section)
        print(f"[benchmarks] {name} done in {section.wall_s:.0f} s", flush=True)
    meta = {
        "mode": profile.name,
        "command": command or f"python -m benchmarks --{profile.name}",
        "profile": profile.__dict__,
        "machine": facts,
        "load_average_at_end": list(os.getloadavg()),
        "wall_s": time.time() - started,
    }
    json_path, md_path = write(results, meta, out)
    return results, json_path, md_path


def failed(sections: list[Section]) -> list[str]:
    return [s.title for s in sections if "error" in s.details]
