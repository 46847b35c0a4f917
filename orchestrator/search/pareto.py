"""Non-dominated sorting, for a sweep with several objectives: the Pareto front of finished
trials, and the order in which a multi-objective ASHA rung keeps trials.

Values are compared in "loss space": each objective turned into one to minimise (a `max` one
negated), a missing or non-finite value the worst there is. A point dominates another when it is
no worse in every objective and better in at least one (Deb et al., 2002).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def losses(values: Sequence[Sequence[float | None]], modes: Sequence[str]) -> np.ndarray:
    """Rows of objective values as rows to minimise. A row with a value missing or not finite (a
    diverged trial) becomes all +inf: every finite row dominates it, however cheap it was."""
    signs = np.array([-1.0 if mode == "max" else 1.0 for mode in modes])
    out = np.array([[math.nan if v is None else float(v) for v in row] for row in values], dtype=float)
    out = out.reshape(len(values), len(modes)) * signs
    out[~np.isfinite(out).all(axis=1)] = math.inf
    return out


def nondominated_ranks(points: np.ndarray) -> np.ndarray:
    """Each point's front, 0 for the non-dominated ones, 1 for those only they dominate, and so on."""
    n = len(points)
    no_worse = (points[:, None, :] <= points[None, :, :]).all(axis=2)
    better = (points[:, None, :] < points[None, :, :]).any(axis=2)
    dominates = no_worse & better  # [i, j]: i dominates j
    ranks = np.full(n, -1)
    remaining = np.ones(n, dtype=bool)
    rank = 0
    while remaining.any():
        current = remaining & ~dominates[remaining].any(axis=0)  # dominated by no point still unranked
        ranks[current] = rank
        remaining &= ~current
        rank += 1
    return ranks


def pareto_front(values: Sequence[Sequence[float | None]], modes: Sequence[str]) -> list[int]:
    """Indices of the points no other point dominates, among those whose objectives are all finite."""
    points = losses(values, modes)
    finite = np.isfinite(points).all(axis=1)
    if not finite.any():
        return []
    index = np.flatnonzero(finite)
    ranks = nondominated_ranks(points[finite])
    return [int(i) for i in index[ranks == 0]]


def priority_order(points: np.ndarray) -> list[int]:
    """The points best first: by front (non-dominated sorting), and within a front by a greedy
    epsilon-net (Salinas et al., 2021, the tie-break Schmucker et al., 2021 use in MO-ASHA): the
    point best in the first objective, then each time the point farthest, in objectives scaled to
    [0, 1] over the front, from those already taken, so the kept points spread along the front."""
    ranks = nondominated_ranks(points)
    order: list[int] = []
    for rank in range(int(ranks.max(initial=-1)) + 1):
        members = np.flatnonzero(ranks == rank)
        order += [int(members[i]) for i in _epsilon_net(points[members])]
    return order


def _epsilon_net(points: np.ndarray) -> list[int]:
    finite = np.where(np.isfinite(points), points, np.nan)
    low, high = np.nanmin(finite, axis=0), np.nanmax(finite, axis=0)
    span = np.where(np.nan_to_num(high - low) > 0, high - low, 1.0)
    scaled = np.nan_to_num((finite - low) / span, nan=1.0)  # a missing objective is the worst end
    taken = [int(np.lexsort(points.T[::-1])[0])]  # best first objective; ties by the next ones
    nearest = np.linalg.norm(scaled - scaled[taken[0]], axis=1)
    while len(taken) < len(points):
        nearest[taken] = -1.0
        nxt = int(np.argmax(nearest))  # the first of equals, so the order is deterministic
        taken.append(nxt)
        nearest = np.minimum(nearest, np.linalg.norm(scaled - scaled[nxt], axis=1))
    return taken
