"""Section 2, budgets: a constrained search against an unconstrained one with the budget applied afterwards.

For each budget (one cost each, chosen to exclude half or more of the demo space; costs from the
table: parameters and MACs on the meta device, latency on this CPU):
- ours: TPE + FidelityOptunaSearch + ASHA with `constraints` in the spec: every trial checks its
  config's costs before epoch 1, an over-budget one reports them and stops (`infeasible`), and
  the searcher turns each trial's costs into Optuna constraints, so TPE learns the feasible region;
- unconstrained: the same search without the budget; its best trial within the budget is what a
  user would pick afterwards;
- random: Optuna's random sampler + ASHA with the budget, for how often a sampler that learns
  nothing proposes an over-budget config.
Each runs `COMPUTE` trial-epochs (infeasible trials cost none) or `max_trials` trials. Figures:
trial-epochs spent on over-budget configs (goal 0 for parameter and MAC budgets), the best
feasible final val_acc at that compute (paired by seed, ours minus unconstrained), and the share
of proposed configs that were over budget.
"""

from __future__ import annotations

import statistics

from benchmarks.replay import replay
from benchmarks.report import Figure
from benchmarks.search_replay import build

COMPUTE = 200  # trial-epochs: about what (a) needs to reach one point of the best, unconstrained
# cost name (spec) -> budget; the demo backbones' costs are in the table's `costs`
BUDGETS = {
    "params <= 250k (test_convnext only)": {"params": 2.5e5},
    "MACs <= 1.3M (test_convnext, mobilenetv3_small_050)": {"macs": 1.3e6},
    "latency <= 1.5 ms (test_resnet, test_vit)": {"latency_ms": 1.5},
}
KEYS = {"params": "total_params", "macs": "macs", "latency_ms": "latency_ms"}
STARTUP = 10  # TPE's random start-up trials (Optuna's default n_startup_trials)


def _within(values: dict, budget: dict) -> bool:
    return all(values[KEYS[name]] <= limit for name, limit in budget.items())


def _run(method: str, table: dict, seed: int, budget: dict, *, apply: bool, max_trials: int) -> dict:
    """One seed's search (with the budget in its spec when `apply`), summarised against the budget."""
    searcher, scheduler = build(method, table, seed, budgets=budget if apply else None)
    trace = replay(searcher, scheduler, table, seed=seed, max_trials=max_trials, max_trial_epochs=COMPUTE)
    over = [not _within(e.values, budget) for e in trace.ended]
    finals = [e.values["val_acc"] for e in trace.completed() if _within(e.values, budget)]
    return {
        "trials": trace.trials,
        "trial_epochs": trace.trial_epochs,
        "over_budget_epochs": sum(e.epochs for e, o in zip(trace.ended, over, strict=True) if o),
        "best_feasible": max(finals, default=0.0),
        "over_share": sum(over) / max(1, len(over)),
        "over_share_after_startup": sum(over[STARTUP:]) / max(1, len(over[STARTUP:])),
    }


def measure(table: dict, seeds: int, max_trials: int) -> dict:
    out = {"compute_trial_epochs": COMPUTE, "budgets": {}}
    for label, budget in BUDGETS.items():
        runs = {
            name: [_run(method, table, s, budget, apply=apply, max_trials=max_trials) for s in range(seeds)]
            for name, method, apply in (
                ("ours", "ours", True),
                ("unconstrained", "ours", False),
                ("random", "random_asha", True),
            )
        }
        out["budgets"][label] = {"budget": budget, **runs}
    return out


def figures(raw: dict) -> list[Figure]:
    out = []
    for label, data in raw["budgets"].items():
        budget, ours, free, rand = data["budget"], data["ours"], data["unconstrained"], data["random"]
        static = "latency_ms" not in budget  # parameters and MACs are known before anything is built
        out.append(
            Figure(
                "search",
                f"budget {label}: trial-epochs on over-budget configs, ours",
                [r["over_budget_epochs"] for r in ours],
                unit="epochs",
                goal=("<=", 0) if static else None,
                over="seeds",
                how=(
                    f"in {COMPUTE} trial-epochs of TPE + FidelityOptunaSearch + ASHA with the budget; over-budget "
                    f"trials stop before epoch 1 ({'counted on the meta device' if static else 'measured latency'})"
                ),
            )
        )
        out.append(
            Figure(
                "search",
                f"budget {label}: trial-epochs on over-budget configs, unconstrained",
                [r["over_budget_epochs"] for r in free],
                unit="epochs",
                over="seeds",
                how=f"the same search without the budget, {COMPUTE} trial-epochs: what the budget saves",
            )
        )
        best_ours = [r["best_feasible"] for r in ours]
        best_free = [r["best_feasible"] for r in free]
        out.append(
            Figure(
                "search",
                f"budget {label}: best feasible val_acc at {COMPUTE} trial-epochs, ours minus unconstrained",
                [a - b for a, b in zip(best_ours, best_free, strict=True)],
                unit="",
                goal=(">=", 0),
                over="seeds",
                how=(
                    f"paired by seed; medians ours {statistics.median(best_ours):.3f}, unconstrained with the budget "
                    f"applied afterwards {statistics.median(best_free):.3f} (0 where no feasible trial completed: "
                    f"ours {sum(b == 0 for b in best_ours)}, unconstrained {sum(b == 0 for b in best_free)} seeds)"
                ),
            )
        )
        random_share = statistics.median(r["over_share"] for r in rand)
        out.append(
            Figure(
                "search",
                f"budget {label}: share of trials over budget after TPE's start-up, ours",
                [r["over_share_after_startup"] for r in ours],
                unit="",
                over="seeds",
                how=(
                    f"trials after the first {STARTUP} (random start-up); all trials: median "
                    f"{statistics.median(r['over_share'] for r in ours):.2f}; random search + ASHA with the "
                    f"budget (learns nothing): {random_share:.2f}; trials per seed: ours "
                    f"{statistics.median(r['trials'] for r in ours):.0f}, random "
                    f"{statistics.median(r['trials'] for r in rand):.0f}"
                ),
            )
        )
    return out
