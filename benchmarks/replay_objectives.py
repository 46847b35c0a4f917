"""Section 2, several objectives: hypervolume against compute, final val_acc (max) and MACs (min).

The demo space's accuracy/cost trade-off: mobilenetv3_small_050 has the fewest MACs, test_convnext
is nearly as accurate as the best (test_resnet) at under a third of its MACs. Methods, each over
the recorded table in Tune's call order (`benchmarks.replay`), two slots:
- ours: Optuna's multi-objective TPE + FidelityOptunaSearch + MO-ASHA (`BaselineASHA` with a
  `ParetoBracket`: non-dominated sorting with an epsilon-net tie-break at each rung);
- random search, no early stopping;
- Optuna's multi-objective TPE without early stopping;
- Optuna's NSGA-II without early stopping (the other multi-objective sampler Optuna ships).
The hypervolume is that of the completed trials' final (val_acc, MACs), each objective scaled to
[0, 1] over the table (0 the best value any config reaches), against the reference point
(1.1, 1.1), as a share of the hypervolume of the table's own front. The goal: random search's
median final hypervolume (after `RANDOM_COMPUTE` trial-epochs) at a third of its compute or less.
"""

from __future__ import annotations

import statistics

from benchmarks.replay import Trace, replay
from benchmarks.report import Figure
from benchmarks.search_replay import build
from orchestrator.search import pareto_front

OBJECTIVES = [("val_acc", "max"), ("macs", "min")]
RANDOM_COMPUTE = 600  # trial-epochs: 60 full trials, a quarter of the space
CHECKPOINTS = (100, 200, 300, 600)
METHODS = {
    "ours": "ours: multi-objective TPE + FidelityOptunaSearch + MO-ASHA",
    "random": "random search, no early stopping",
    "tpe_only": "multi-objective TPE, no early stopping",
    "nsga2": "NSGA-II, no early stopping",
}
REFERENCE = 1.1


class Scale:
    """Objectives scaled to [0, 1] over the table, as losses (0: the best any config reaches)."""

    def __init__(self, table: dict):
        finals = [(t["val_acc"][-1], t["macs"]) for t in table["trials"]]
        accs, macs = zip(*finals, strict=True)
        self.acc, self.macs = (min(accs), max(accs)), (min(macs), max(macs))
        self.best = hypervolume([self.point(a, m) for a, m in finals])

    def point(self, acc: float, macs: float) -> tuple[float, float]:
        return (
            (self.acc[1] - acc) / (self.acc[1] - self.acc[0]),
            (macs - self.macs[0]) / (self.macs[1] - self.macs[0]),
        )


def hypervolume(points: list[tuple[float, float]]) -> float:
    """The area that two-objective losses dominate, up to (REFERENCE, REFERENCE)."""
    front = sorted({points[i] for i in pareto_front([list(p) for p in points], ["min", "min"])}, key=lambda p: p[1])
    area = 0.0
    for i, (first, second) in enumerate(front):  # by the second objective: the first one falls
        upto = min(front[i + 1][1] if i + 1 < len(front) else REFERENCE, REFERENCE)
        area += max(0.0, REFERENCE - first) * max(0.0, upto - second)
    return area


def curve(trace: Trace, scale: Scale) -> list[tuple[int, float]]:
    """(trial-epochs spent, hypervolume share) after each completed trial."""
    points, out = [], []
    for ended in trace.ended:
        if ended.outcome == "completed":
            points.append(scale.point(ended.values["val_acc"], ended.values["macs"]))
            out.append((ended.at_epochs, hypervolume(points) / scale.best))
    return out


def at(points: list[tuple[int, float]], compute: int) -> float:
    return max((hv for epochs, hv in points if epochs <= compute), default=0.0)


def reach(points: list[tuple[int, float]], target: float) -> int | None:
    return next((epochs for epochs, hv in points if hv >= target - 1e-12), None)


def measure(table: dict, seeds: int, max_trials: int) -> dict:
    scale = Scale(table)
    out: dict = {"objectives": OBJECTIVES, "random_compute": RANDOM_COMPUTE, "best_hypervolume": scale.best}
    for method in METHODS:
        curves = []
        for seed in range(seeds):
            searcher, scheduler = build(method, table, seed, objectives=OBJECTIVES)
            trace = replay(
                searcher, scheduler, table, seed=seed, max_trials=max_trials, max_trial_epochs=RANDOM_COMPUTE
            )
            curves.append(curve(trace, scale))
        out[method] = curves
    out["target"] = statistics.median(at(c, RANDOM_COMPUTE) for c in out["random"])
    return out


def figures(raw: dict) -> list[Figure]:
    target, compute = raw["target"], raw["random_compute"]
    out = []
    for method, label in METHODS.items():
        reached = [reach(c, target) for c in raw[method]]
        hv = {k: statistics.median(at(c, k) for c in raw[method]) for k in CHECKPOINTS}
        out.append(
            Figure(
                "search",
                f"two objectives, {label}: trial-epochs to random search's final hypervolume / random's compute",
                [(r if r is not None else 2 * compute) / compute for r in reached],
                goal=("<=", round(1 / 3, 3)) if method == "ours" else None,
                over="seeds",
                how=(
                    f"target {target:.3f} of the table's front hypervolume (val_acc max, MACs min), random search's "
                    f"median after {compute} trial-epochs; not reached within {compute} counts as 2x, "
                    f"{sum(r is None for r in reached)} seeds; median hypervolume at "
                    + ", ".join(f"{k} trial-epochs {v:.3f}" for k, v in hv.items())
                ),
            )
        )
    return out
