"""Section 7: many short trials through the whole driver.

`run_sweep` runs hundreds of data-free trials (`benchmarks.synthetic`: each epoch is a sleep of
`scale_epoch_s`, so a trial that ASHA lets finish trains for about a second) on two slots, with
everything a user gets: TPE on the default study storage (a journal file), ASHA, live MLflow
logging to SQLite, a checkpoint with the epoch history every epoch, the ledger's signed
snapshots, the end-of-sweep recording pass and the record check; then, as a user would run them
after it, `orchestrator check` and `orchestrator report`. The sweep runs in a subprocess of its
own, so the driver's memory is its own.

Figures:
- wall against the ideal: `Tuner.fit`'s wall against the trials' training time (their sleep)
  summed and spread over the slots, as Ray's own scalability test counts it (10,000 trials of
  1 s on 16 CPUs: 715 s against 625 s, 1.14x);
- the driver's resident memory when the last trial ended against when the 50th did (sampled
  every 0.2 s; the sample just after each trial's end);
- the time of each `FidelityOptunaSearch.suggest` call, the last ones of the sweep;
- the time of the end-of-sweep phases (the recording pass, the record check) and of the
  `check` and `report` commands run after the sweep, with their cost per trial.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from benchmarks.report import Figure, Section

REPO = Path(__file__).resolve().parents[1]
CONCURRENCY = 2
MAX_EPOCHS, GRACE, FACTOR = 4, 1, 2  # rungs at epochs 1 and 2: a trial runs 1, 2 or 4 epochs
MEMORY_AT = 50  # the driver's memory after this many trials is the baseline
SAMPLE_S = 0.2


def spec(trials: int) -> dict:
    return {
        "experiment": "scale",
        "weights": {"source": "none"},
        "search": {"trials": trials, "concurrent": CONCURRENCY, "seed": 0},
        "early_stopping": {
            "scheduler": "asha",
            "max_epochs": MAX_EPOCHS,
            "grace_period": GRACE,
            "reduction_factor": FACTOR,
        },
        "resources": {"cpu": 1, "gpu": 0},
        "space": {
            "lr": {"type": "float", "low": 1.0e-4, "high": 3.0e-3, "log": True},
            "dropout": {"type": "float", "low": 0.0, "high": 0.4},
        },
        "storage": "./runs",
    }


# -- the sweep, in a subprocess ------------------------------------------------------------------
def sweep_arm(spec_path: Path, workdir: Path, epoch_s: float, profile: bool = False) -> dict:
    out = workdir / "scale.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("RAY_ADDRESS", None)
    command = [sys.executable, "-m", "benchmarks.scale", str(spec_path), str(out), str(epoch_s)]
    if profile:
        command.append("--profile")
    subprocess.run(command, cwd=workdir, env=env, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


class MemorySampler(threading.Thread):
    """This process's resident memory every SAMPLE_S seconds: (time, bytes)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.samples: list[tuple[float, int]] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self.stopped.is_set():
            self.samples.append((time.time(), me.memory_info().rss))
            self.stopped.wait(SAMPLE_S)


def _sweep_child(spec_path: str, out: str, epoch_s: float, profile: bool) -> None:
    """Runs in the subprocess: the sweep, then `check` and `report`, each timed."""
    from ray import tune

    from benchmarks.synthetic import synthetic_trial
    from orchestrator.run import check_sweep, report_sweep, run_sweep
    from orchestrator.search import FidelityOptunaSearch

    log = str(Path(out).with_suffix(".trials.jsonl").resolve())
    stamps: dict[str, float] = {}
    suggestions: list[tuple[float, float]] = []  # (when, seconds) of each suggestion that made a trial
    fit, suggest = tune.Tuner.fit, FidelityOptunaSearch.suggest

    def timed_fit(self, *args, **kwargs):
        stamps["fit_start"], cpu = time.time(), time.process_time()
        try:
            return fit(self, *args, **kwargs)
        finally:
            stamps["fit_end"], stamps["fit_cpu_s"] = time.time(), time.process_time() - cpu

    def timed_suggest(self, trial_id):
        started = time.perf_counter()
        config = suggest(self, trial_id)
        if config is not None:
            suggestions.append((time.time(), time.perf_counter() - started))
        return config

    tune.Tuner.fit, FidelityOptunaSearch.suggest = timed_fit, timed_suggest
    sampler = MemorySampler()
    sampler.start()
    trainable = tune.with_parameters(synthetic_trial, epoch_s=epoch_s, log=log, with_costs=False)
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    summary = run_sweep(spec_path, trainable=trainable, fresh=True)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(str(Path(out).with_suffix(".prof")))
    commands = {}
    for name, command in (("check", check_sweep), ("report", report_sweep)):
        started = time.perf_counter()
        result = command(spec_path)
        commands[name] = time.perf_counter() - started
        if name == "check":
            commands["check_problems"] = result.problems
    sampler.stopped.set()
    sampler.join()
    ends: dict[str, dict] = {}
    for line in Path(log).read_text().splitlines():
        call = json.loads(line)
        ends[call["trial_id"]] = call  # the last line of a trial: its last epoch
    Path(out).write_text(
        json.dumps(
            {
                **stamps,
                "trials": sorted(ends.values(), key=lambda t: t["end"]),
                "memory": sampler.samples,
                "suggestions": suggestions,
                "timings": summary.timings,
                "audit_problems": summary.audit.problems if summary.audit else ["no audit"],
                "outcomes": summary.outcomes,
                "commands": commands,
            }
        )
    )


# -- figures -------------------------------------------------------------------------------------
def rss_after(samples: list[tuple[float, int]], moment: float) -> int:
    """The first sample taken at or after `moment` (the last one if none is)."""
    return next((rss for when, rss in samples if when >= moment), samples[-1][1])


def measure(trials: int, epoch_s: float, profile: bool = False) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = Path(tmp) / "scale.yaml"
        spec_path.write_text(yaml.safe_dump(spec(trials), sort_keys=False))
        result = sweep_arm(spec_path, Path(tmp), epoch_s, profile)
        if profile:
            result["profile"] = str(Path(tmp) / "scale.prof")
    return result


def run(profile) -> Section:
    trials, epoch_s = profile.scale_trials, profile.scale_epoch_s
    result = measure(trials, epoch_s)
    if result["audit_problems"] or result["commands"]["check_problems"]:
        raise RuntimeError(
            f"the record check failed: {(result['audit_problems'] + result['commands']['check_problems'])[:3]}"
        )
    ran = result["trials"]
    wall = result["fit_end"] - result["fit_start"]
    trained = sum(t["slept"] for t in ran)
    called = sum(t["end"] - t["start"] for t in ran)
    first_start = min(t["start"] for t in ran)
    epochs = sum(t["epoch"] for t in ran)
    memory, baseline_at = result["memory"], min(MEMORY_AT, len(ran)) - 1
    base_rss = rss_after(memory, ran[baseline_at]["end"])
    last_rss = rss_after(memory, ran[-1]["end"])
    growth = [rss_after(memory, t["end"]) / base_rss for t in ran[baseline_at:]]
    late = [s for _, s in result["suggestions"][-20:]]
    timings, commands = result["timings"], result["commands"]
    size = f"{len(ran)} trials ({epochs} trial-epochs of {epoch_s:g} s), {CONCURRENCY} slots"
    per_trial = {k: 1000 * v / len(ran) for k, v in {**timings, **commands}.items() if isinstance(v, float)}
    figures = [
        Figure(
            "scale",
            "wall / ideal (training time summed over the slots)",
            [wall / (trained / CONCURRENCY)],
            goal=("<=", 1.10),
            over="sweep",
            how=(
                f"{size}; `Tuner.fit` wall {wall:.0f} s against {trained / CONCURRENCY:.0f} s of sleep per slot "
                f"(Ray's own test: 1.14x); from the first trial's start: "
                f"{(result['fit_end'] - first_start) / (trained / CONCURRENCY):.3f}x; against the trials' whole "
                f"call times: {wall / (called / CONCURRENCY):.3f}x; "
                f"driver CPU during the fit {result['fit_cpu_s']:.0f} s"
            ),
        ),
        Figure(
            "scale",
            f"driver memory at trial {len(ran)} / at trial {baseline_at + 1}",
            [last_rss / base_rss],
            goal=("<=", 1.2),
            over="sweep",
            how=(
                f"resident memory of the driver process: {base_rss / 2**20:.0f} MiB after trial {baseline_at + 1}, "
                f"{last_rss / 2**20:.0f} MiB after trial {len(ran)}, at most {max(growth):.3f}x in between"
            ),
        ),
        Figure(
            "scale",
            f"time per suggestion, the last {len(late)} trials",
            [1000 * s for s in late],
            unit="ms",
            over="suggestions",
            how=f"`FidelityOptunaSearch.suggest` on the journal study, from trial {len(ran) - len(late) + 1} on",
        ),
    ]
    for name, label in (
        ("recording", "end-of-sweep recording pass"),
        ("audit", "record check at the end of the sweep"),
    ):
        figures.append(_seconds(label, timings[name], size, per_trial[name]))
    for name, label in (("check", "`orchestrator check` after the sweep"), ("report", "`orchestrator report`")):
        figures.append(_seconds(label, commands[name], size, per_trial[name]))
    details = {k: v for k, v in result.items() if k not in ("memory", "trials")}
    details["trial_s"] = {"median": statistics.median(t["end"] - t["start"] for t in ran), "trained_total": trained}
    details["memory_mib"] = [(round(when - result["fit_start"], 1), rss / 2**20) for when, rss in memory[::25]]
    return Section("Many short trials", figures, details)


def _seconds(label: str, value: float, size: str, per_trial_ms: float) -> Figure:
    return Figure(
        "scale",
        f"{label}, seconds",
        [value],
        unit="s",
        goal=("<=", 60.0),
        over="sweep",
        how=f"{size}: {per_trial_ms:.0f} ms a trial",
    )


if __name__ == "__main__":
    _sweep_child(sys.argv[1], sys.argv[2], float(sys.argv[3]), "--profile" in sys.argv[4:])
