"""Section 2, rungs at unfreeze boundaries: phase-aware ASHA against plain ASHA, same TPE, same seeds.

Phase-aware (`early_stopping.phase_aware`): a `gradual` or `lp_ft` trial that reports frozen
groups is not judged at a rung that falls in its frozen phase; the decision waits for its first
fully trainable epoch, at the latest rung it has passed. Measured two ways:
- trial-epochs until a trial completes within one point of the best final val_acc (as section 2's
  (a)), paired by seed, and against random search's median (the standing goal, a third or less);
- in runs of a fixed `TRIALS` trials, how often a trial of the table's best config, of any config
  within one point of it, and of those that are `gradual` or `lp_ft`, is stopped early.
"""

from __future__ import annotations

import statistics

from benchmarks import curves
from benchmarks.curves import KEYS
from benchmarks.replay import replay
from benchmarks.report import Figure
from benchmarks.search_replay import build
from benchmarks.search_replay import replay as to_target

TRIALS = 60  # a quarter of the space: a sweep that goes on after it found something good
TRANSITIONAL = ("gradual", "lp_ft")


def _to_target(table: dict, seed: int, target: float, max_trials: int, phase_aware: bool) -> int:
    return to_target("ours", table, seed, target=target, max_trials=max_trials, phase_aware=phase_aware).trial_epochs


def _stopped_early(table: dict, seed: int, phase_aware: bool, groups: dict[str, set]) -> dict[str, list[int]]:
    """For each group of configs: [trials stopped early, trials] in a run of TRIALS trials."""
    searcher, scheduler = build("ours", table, seed, phase_aware=phase_aware)
    trace = replay(searcher, scheduler, table, seed=seed, max_trials=TRIALS)
    ended = [(curves.key(e.config), e.outcome == "pruned") for e in trace.ended]
    return {
        name: [sum(p for k, p in ended if k in keys), sum(k in keys for k, _ in ended)] for name, keys in groups.items()
    }


def measure(table: dict, seeds: int, max_trials: int) -> dict:
    best_final = max(t["val_acc"][-1] for t in table["trials"])
    target = best_final - 0.01
    out: dict = {"target": target, "trials_per_fixed_run": TRIALS}
    best = curves.key(max(table["trials"], key=lambda t: t["val_acc"][-1])["config"])
    qualifying = {curves.key(t["config"]) for t in table["trials"] if t["val_acc"][-1] >= target}
    groups = {
        "the table's best config": {best},
        f"the {len(qualifying)} configs within 1 pt": qualifying,
        "those of them gradual or lp_ft": {k for k in qualifying if k[KEYS.index("unfreeze")] in TRANSITIONAL},
    }
    out["groups"] = {name: sorted(map(list, keys)) for name, keys in groups.items()}
    for name, phase in (("plain", False), ("phase_aware", True)):
        out[name] = [_to_target(table, s, target, max_trials, phase) for s in range(seeds)]
        out[f"{name}_fixed"] = [_stopped_early(table, s, phase, groups) for s in range(seeds)]
    return out


def _pruned(runs: list[dict], group: str) -> tuple[list[float], float, int]:
    """Per seed that ran such a trial, the share stopped early; and pooled: the share and the trials."""
    counts = [run[group] for run in runs if run[group][1]]
    pruned, total = sum(c[0] for c in counts), sum(c[1] for c in counts)
    return [c[0] / c[1] for c in counts] or [0.0], (pruned / total if total else 0.0), total


def figures(raw: dict, random_epochs: list[int]) -> list[Figure]:
    plain, phase = raw["plain"], raw["phase_aware"]
    median_random = statistics.median(random_epochs)
    ratios = [a / b for a, b in zip(phase, plain, strict=True)]
    out = [
        Figure(
            "search",
            "phase-aware rungs: trial-epochs to within 1 pt, phase-aware / plain ASHA",
            ratios,
            goal=("<=", 1.0),
            over="seeds",
            how=(
                f"TPE + FidelityOptunaSearch + ASHA with and without `phase_aware`, same seed; medians "
                f"{statistics.median(phase):.0f} and {statistics.median(plain):.0f} trial-epochs, means "
                f"{statistics.mean(phase):.0f} and {statistics.mean(plain):.0f}; phase-aware needed fewer in "
                f"{sum(a < b for a, b in zip(phase, plain, strict=True))}, more in "
                f"{sum(a > b for a, b in zip(phase, plain, strict=True))} seeds"
            ),
        ),
        Figure(
            "search",
            "phase-aware rungs: trial-epochs, phase-aware / (b) random",
            [a / median_random for a in phase],
            goal=("<=", round(1 / 3, 3)),
            over="seeds",
            how=f"each seed over the median of (b) ({median_random:.0f} trial-epochs)",
        ),
    ]
    for label in raw["groups"]:
        for name, runs in (("phase-aware", raw["phase_aware_fixed"]), ("plain ASHA", raw["plain_fixed"])):
            per_seed, pooled, n = _pruned(runs, label)
            out.append(
                Figure(
                    "search",
                    f"phase-aware rungs: share of trials of {label} stopped early, {name}",
                    per_seed,
                    unit="",
                    over="seeds that ran one",
                    how=(
                        f"pooled: {pooled:.2f} of {n} trials; runs of {raw['trials_per_fixed_run']} trials, one per "
                        "seed"
                    ),
                )
            )
    return out
