"""Section 1: orchestration overhead and slot occupancy.

The same four configs (two backbones x two learning rates, fixed seed, 24 epochs of ~1.3 s:
trials of about 30 s on an idle core) run twice, two at a time:
- through `orchestrator sweep`: `run_sweep` on a spec that lists the four configs as
  `search.baselines` (so they run in that order) with `early_stopping.scheduler: none`, in a
  subprocess of its own, with Ray, Optuna (SQLite) and MLflow (SQLite) as a user gets them;
- in a pool of two plain worker processes (`benchmarks.harness`), which call the same
  `trainables.finetune` with the same configs, in the same order, and no Ray, Optuna or MLflow.
`weights.source: none`, so no pretraining precedes either.

Walls:
- sweep: from `Tuner.fit` being called to its return (Ray's local cluster is already up, the
  MLflow runs are open; after it come the final MLflow sync and the model registration);
- plain: from creating the pool (its workers start and import torch and timm as Ray's do) to
  the last trial's end.
- end to end (no goal): the whole `run_sweep` call against the same plain wall.
A trial's time is the duration of its `finetune` call, taken the same way in both: in the
sweep, `run_sweep` gets `finetune` wrapped in a timer that appends each call's start and end
to a file (Ray's own `time_total_s` is kept beside it). Slot occupancy = sum of trial times /
(wall x concurrency); the idle slot time is split into the wait before the first trial
starts, the gaps between trials, and the time after the last one ends.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

from benchmarks.harness import run_pool
from benchmarks.report import Figure, Section
from trainables.finetune import finetune  # imported where Ray unpickles the timed wrapper, as a plain worker does

REPO = Path(__file__).resolve().parents[1]
CONCURRENCY = 2
CONFIGS = [
    {"backbone": "test_resnet", "lr": 0.001},
    {"backbone": "test_convnext", "lr": 0.001},
    {"backbone": "test_resnet", "lr": 0.003},
    {"backbone": "test_convnext", "lr": 0.003},
]


def spec(epochs: int, train_per_class: int) -> dict:
    return {
        "experiment": "overhead",
        "data": {"classes": [5, 6, 7, 8, 9], "train_per_class": train_per_class, "val_per_class": 20, "image_size": 32},
        "weights": {"source": "none"},
        "search": {"trials": len(CONFIGS), "concurrent": CONCURRENCY, "seed": 0, "baselines": CONFIGS},
        "early_stopping": {"scheduler": "none", "max_epochs": epochs},
        "resources": {"cpu": 1, "gpu": 0},
        "space": {
            "backbone": {"type": "categorical", "choices": sorted({c["backbone"] for c in CONFIGS})},
            "lr": {"type": "categorical", "choices": sorted({c["lr"] for c in CONFIGS})},
            "batch_size": 16,
        },
        "storage": "./runs",
    }


# -- the sweep, in a subprocess ------------------------------------------------------------------
def sweep_arm(spec: Path, workdir: Path) -> dict:
    out = workdir / "sweep.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("RAY_ADDRESS", None)
    subprocess.run(
        [sys.executable, "-m", "benchmarks.overhead", str(spec), str(out)],
        cwd=workdir,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return json.loads(out.read_text())


def timed_finetune(config: dict, **kwargs) -> None:
    """`finetune`, appending its wall and CPU times to $BENCHMARK_TRIAL_LOG (runs in Ray's workers)."""
    started, thread0, process0 = time.time(), time.thread_time(), time.process_time()
    try:
        finetune(config, **kwargs)
    finally:
        call = {
            "baseline": config.get("baseline"),
            "start": started,
            "end": time.time(),
            "thread_cpu_s": time.thread_time() - thread0,  # the training thread
            "process_cpu_s": time.process_time() - process0,  # the whole worker, Ray's threads included
        }
        with open(os.environ["BENCHMARK_TRIAL_LOG"], "a") as log:
            log.write(json.dumps(call) + "\n")


timed_finetune.__name__ = "finetune"  # Ray names trials after it


def cpu_by_process(root: int) -> dict[int, tuple[str, float]]:
    """CPU-seconds used so far by `root` and its descendants, by pid, with a kind."""
    parent, kinds = psutil.Process(root), {}
    for process in [parent, *parent.children(recursive=True)]:
        try:
            with process.oneshot():
                cmdline, cpu = " ".join(process.cmdline()), process.cpu_times()
        except psutil.Error:
            continue  # it just ended
        kinds[process.pid] = (_kind(process.pid, root, cmdline), cpu.user + cpu.system)
    return kinds


def _kind(pid: int, root: int, cmdline: str) -> str:
    if pid == root:
        return "driver (Tune loop, searcher, MLflow)"
    if cmdline.startswith("ray::"):
        return "trial workers"
    for name in ("raylet", "gcs_server"):
        if name in cmdline:
            return name
    return "other Ray services (dashboard agent, monitors)"


def _sweep_child(spec: str, out: str) -> None:
    """Runs in the subprocess: the sweep, with `Tuner.fit` and every trial timed."""
    from ray import tune

    import orchestrator.run.commands
    from orchestrator.run import run_sweep

    os.environ["BENCHMARK_TRIAL_LOG"] = str(Path(out).with_suffix(".trials.jsonl").resolve())
    orchestrator.run.commands.finetune = timed_finetune
    stamps: dict[str, float] = {}
    fit = tune.Tuner.fit

    cpu: dict[str, dict] = {}

    def timed_fit(self, *args, **kwargs):
        stamps["fit_start"] = time.time()
        cpu["start"] = cpu_by_process(os.getpid())
        try:
            return fit(self, *args, **kwargs)
        finally:
            stamps["fit_end"] = time.time()
            cpu["end"] = cpu_by_process(os.getpid())

    tune.Tuner.fit = timed_fit
    stamps["start"] = time.time()
    summary = run_sweep(spec, fresh=True)
    stamps["end"] = time.time()
    trials = []
    for trial_dir in sorted(Path(summary.ray_path).iterdir()):
        if not (trial_dir / "result.json").is_file():
            continue
        results = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines() if line]
        config = json.loads((trial_dir / "params.json").read_text())
        trials.append({"config": config, "time_total_s": results[-1]["time_total_s"], "epochs": results[-1]["epoch"]})
    trials.sort(key=lambda t: t["config"].get("baseline", 0))
    calls = [json.loads(line) for line in Path(os.environ["BENCHMARK_TRIAL_LOG"]).read_text().splitlines()]
    for trial in trials:
        call = [c for c in calls if c["baseline"] == trial["config"].get("baseline")][-1]  # a retry: the last
        trial.update(call, time_s=call["end"] - call["start"])
    fit_cpu: dict[str, float] = {}
    for pid, (kind, used) in cpu["end"].items():
        fit_cpu[kind] = fit_cpu.get(kind, 0.0) + used - cpu["start"].get(pid, (kind, 0.0))[1]
    Path(out).write_text(json.dumps({**stamps, "trials": trials, "outcomes": summary.outcomes, "fit_cpu_s": fit_cpu}))


# -- the plain pool ------------------------------------------------------------------------------
def plain_arm(spec_path: Path, configs: list[dict]) -> dict:
    from orchestrator.run import target_task
    from orchestrator.spec import load_spec

    spec = load_spec(spec_path)
    task = target_task(spec, str(spec_path))
    records, started, ended = run_pool(
        configs, concurrency=CONCURRENCY, task=task, image_size=spec.data.image_size, source_weights={}
    )
    return {
        "start": started,
        "end": ended,
        "trials": [
            {
                "config": r.config,
                "start": r.started,
                "end": r.ended,
                "time_s": r.wall_s,
                "thread_cpu_s": r.thread_cpu_s,
                "process_cpu_s": r.process_cpu_s,
                "epochs": len(r.reports),
            }
            for r in records
        ],
    }


def idle(trials: list[dict], start: float, end: float) -> dict[str, float]:
    """Idle slot-seconds: before the first trials start, between trials, after the last ones end."""
    starts = sorted(t["start"] for t in trials)[:CONCURRENCY]
    ends = sorted(t["end"] for t in trials)[-CONCURRENCY:]
    before, after = sum(s - start for s in starts), sum(end - e for e in ends)
    total = (end - start) * CONCURRENCY - sum(t["end"] - t["start"] for t in trials)
    return {"before first": before, "between": total - before - after, "after last": after}


def measure(epochs: int, train_per_class: int, repeats: int) -> list[dict]:
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = Path(tmp) / "overhead.yaml"
        spec_path.write_text(yaml.safe_dump(spec(epochs, train_per_class), sort_keys=False))
        configs = None
        for r in range(repeats):
            arms = {}
            for arm in ("sweep", "plain") if r % 2 == 0 else ("plain", "sweep"):
                if arm == "sweep":
                    workdir = Path(tmp) / f"sweep-{r}"
                    workdir.mkdir()
                    arms["sweep"] = sweep_arm(spec_path, workdir)
                    configs = configs or [t["config"] for t in arms["sweep"]["trials"]]
                else:
                    arms["plain"] = plain_arm(spec_path, configs)
            rounds.append(arms)
    return rounds


def run(profile) -> Section:
    rounds = measure(profile.overhead_epochs, profile.overhead_train_per_class, profile.overhead_repeats)
    ratio, end_to_end, per_trial = [], [], []
    occupancy: dict[str, list[float]] = {"sweep": [], "plain": []}
    warm: dict[str, list[float]] = {"sweep": [], "plain": []}  # occupancy once each slot's worker is up
    for arms in rounds:
        sweep, plain = arms["sweep"], arms["plain"]
        if [t["epochs"] for t in sweep["trials"]] != [t["epochs"] for t in plain["trials"]]:
            raise RuntimeError("the sweep and the plain pool did not run the same trials")
        fit_wall = sweep["fit_end"] - sweep["fit_start"]
        plain_wall = plain["end"] - plain["start"]
        ratio.append(fit_wall / plain_wall)
        end_to_end.append((sweep["end"] - sweep["start"]) / plain_wall)
        per_trial += [s["time_s"] / p["time_s"] for s, p in zip(sweep["trials"], plain["trials"], strict=True)]
        arms["fit_wall_s"], arms["plain_wall_s"] = fit_wall, plain_wall
        arms["sweep_idle_slot_s"] = idle(sweep["trials"], sweep["fit_start"], sweep["fit_end"])
        arms["plain_idle_slot_s"] = idle(plain["trials"], plain["start"], plain["end"])
        for arm, wall in (("sweep", fit_wall), ("plain", plain_wall)):
            busy = sum(t["time_s"] for t in arms[arm]["trials"])
            occupancy[arm].append(busy / (wall * CONCURRENCY))
            warm[arm].append(busy / (wall * CONCURRENCY - arms[f"{arm}_idle_slot_s"]["before first"]))
    profile_note = where_cpu_goes(rounds)
    last = rounds[-1]
    idle_note = ", ".join(f"{k} {v:.1f} s" for k, v in last["sweep_idle_slot_s"].items())
    plain_note = ", ".join(f"{k} {v:.1f} s" for k, v in last["plain_idle_slot_s"].items())
    trial_s = statistics.median(t["time_s"] for arms in rounds for t in arms["plain"]["trials"])
    size = f"{len(CONFIGS)} configs, {CONCURRENCY} at a time, trials of {trial_s:.0f} s (median)"
    figures = [
        Figure(
            "overhead",
            "wall, sweep (Tuner.fit) / plain processes",
            ratio,
            goal=("<=", 1.10),
            how=f"{size}; `Tuner.fit` call to return vs plain pool creation to last trial end",
        ),
        Figure(
            "overhead",
            "slot occupancy, sweep",
            occupancy["sweep"],
            unit="",
            goal=(">=", 0.9),
            how=f"sum of `finetune` call times / (Tuner.fit wall x 2 slots); idle slot time: {idle_note}",
        ),
        Figure(
            "overhead",
            "slot occupancy, plain processes",
            occupancy["plain"],
            unit="",
            how=f"sum of `finetune` call times / (pool wall x 2 slots); idle slot time: {plain_note}",
        ),
        Figure(
            "overhead",
            "slot occupancy once a slot's first trial has started, sweep / plain processes",
            [w / p for w, p in zip(warm["sweep"], warm["plain"], strict=True)],
            how=(
                f"the two above without the wait for each slot's first trial (a new worker process importing "
                f"torch and timm, in both arms): sweep {statistics.median(warm['sweep']):.3f}, "
                f"plain {statistics.median(warm['plain']):.3f}"
            ),
        ),
        Figure(
            "overhead",
            "trial time, in the sweep / in a plain process",
            per_trial,
            over="trials",
            how=f"the same config's `finetune` call; {profile_note}",
        ),
        Figure(
            "overhead",
            "end to end, `run_sweep` / plain processes",
            end_to_end,
            how="the whole library call: Ray start, MLflow runs, final sync and model registration included",
        ),
    ]
    return Section("Orchestration overhead", figures, {"rounds": rounds, "where_cpu_goes": profile_note})


def where_cpu_goes(rounds: list[dict]) -> str:
    """Where the sweep's extra time goes: the trials' own CPU, Ray's threads in the trial workers,
    and the CPU other processes of the sweep take from the 2 cores during `Tuner.fit`."""
    thread = {arm: sum(t["thread_cpu_s"] for r in rounds for t in r[arm]["trials"]) for arm in ("sweep", "plain")}
    extra = {
        arm: max(0.0, sum(t["process_cpu_s"] - t["thread_cpu_s"] for r in rounds for t in r[arm]["trials"]))
        / len(rounds)
        for arm in ("sweep", "plain")
    }
    fit_cpu: dict[str, float] = {}
    for r in rounds:
        for kind, used in r["sweep"].get("fit_cpu_s", {}).items():
            fit_cpu[kind] = fit_cpu.get(kind, 0.0) + used / len(rounds)
    # Trial workers are left out: their training is counted above, and workers that Tune
    # replaced during the fit are gone before the second snapshot.
    others = ", ".join(
        f"{k} {v:.1f}" for k, v in sorted(fit_cpu.items(), key=lambda kv: -kv[1]) if k != "trial workers"
    )
    return (
        f"training-thread CPU sweep/plain {thread['sweep'] / thread['plain']:.2f}; other threads of the trial "
        f"processes during the calls: {extra['sweep']:.1f} CPU-s a sweep vs {extra['plain']:.1f} plain; "
        f"CPU-s used during Tuner.fit by the sweep's other processes: {others}"
    )


if __name__ == "__main__":
    _sweep_child(sys.argv[1], sys.argv[2])
