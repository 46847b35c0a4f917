"""Early-stopping decisions, driven in Tune's call order (`on_trial_add`, then a decision per result,
the result that ends a trial to `on_trial_complete` only): Ray's ASHA for one objective, MO-ASHA
(non-dominated sorting, epsilon-net tie-break) for several, baselines, and phase-aware rungs."""

from types import SimpleNamespace

import numpy as np
import pytest

from orchestrator.search import BaselineASHA, losses, nondominated_ranks, pareto_front, priority_order
from trainables.budgets import infeasible_result

STOP, CONTINUE = "STOP", "CONTINUE"


def scheduler(keys=("val_acc",), modes=("max",), *, phase_aware=False, rf=2, max_t=8):
    return BaselineASHA(
        keys=keys, modes=modes, max_t=max_t, grace_period=1, reduction_factor=rf, phase_aware=phase_aware
    )


def add(sched, trial_id, **config):
    trial = SimpleNamespace(trial_id=trial_id, config=config)
    sched.on_trial_add(None, trial)
    return trial


# -- non-dominated sorting -------------------------------------------------------------------------


def test_the_front_is_the_points_no_other_beats_in_every_objective():
    values = [[0.9, 5.0], [0.8, 3.0], [0.85, 6.0], [0.7, 1.0], [None, 0.5], [0.9, 5.0]]
    assert pareto_front(values, ["max", "min"]) == [0, 1, 3, 5]  # equal points do not dominate each other
    assert pareto_front([[0.5], [0.9], [0.9]], ["max"]) == [1, 2]  # one objective: the ties at the best
    assert pareto_front([[None, 1.0]], ["max", "min"]) == []  # an objective missing: never on the front


def test_ranks_peel_fronts_and_a_missing_value_is_the_worst():
    points = losses([[0.9, 5.0], [0.8, 3.0], [0.85, 6.0], [float("nan"), 1.0]], ["max", "min"])
    assert (points[3] == np.inf).all()  # a diverged trial: last, however fast
    assert nondominated_ranks(points).tolist() == [0, 0, 1, 2]


def test_within_a_front_the_first_objectives_best_leads_then_the_farthest_point():
    # all on one front: val_acc up, latency up
    points = losses([[0.5, 1.0], [0.6, 1.1], [0.9, 5.0], [0.7, 3.0]], ["max", "min"])
    order = priority_order(points)
    assert order[0] == 2  # best val_acc
    assert order[1] == 0  # then the far end of the front, not its neighbour 3
    assert sorted(order) == [0, 1, 2, 3]


# -- one objective: Ray's ASHA --------------------------------------------------------------------


def test_one_objective_is_rays_asha_and_baselines_run_on():
    sched = scheduler()
    good, bad, base = add(sched, "good"), add(sched, "bad"), add(sched, "base", baseline=0)
    assert sched.on_trial_result(None, good, {"epoch": 1, "val_acc": 0.9}) == CONTINUE
    assert sched.on_trial_result(None, bad, {"epoch": 1, "val_acc": 0.1}) == STOP
    assert sched.on_trial_result(None, base, {"epoch": 1, "val_acc": 0.1}) == CONTINUE
    assert sched.on_trial_result(None, good, {"epoch": 8, "val_acc": 0.9}) == STOP  # max_t


def test_an_infeasible_trials_costs_reach_no_rung():
    sched = scheduler()
    over, later = add(sched, "over"), add(sched, "later")
    result = infeasible_result({"total_params": 9e9})
    assert sched.on_trial_result(None, over, result) == CONTINUE
    sched.on_trial_complete(None, over, result)
    assert all(not recorded for _, recorded in sched._brackets[0]._rungs)
    assert sched.on_trial_result(None, later, {"epoch": 1, "val_acc": 0.1}) == CONTINUE  # first at its rung


# -- several objectives: MO-ASHA ------------------------------------------------------------------


def test_a_trial_no_one_dominates_is_kept_where_one_objective_would_stop_it():
    results = {  # in the order they reach the rung (rf 2: the top half, rounded up, continue)
        "accurate": {"epoch": 1, "val_acc": 0.9, "latency_ms": 5.0},
        "dominated": {"epoch": 1, "val_acc": 0.6, "latency_ms": 6.0},
        "worse": {"epoch": 1, "val_acc": 0.55, "latency_ms": 7.0},
        "fast": {"epoch": 1, "val_acc": 0.5, "latency_ms": 1.0},  # least accurate, fastest: on the front
    }
    single, multi = scheduler(), scheduler(("val_acc", "latency_ms"), ("max", "min"))
    decisions = {}
    for name, sched in (("single", single), ("multi", multi)):
        trials = {t: add(sched, t) for t in results}
        decisions[name] = {t: sched.on_trial_result(None, trials[t], results[t]) for t in results}
    assert decisions["single"] == {"accurate": CONTINUE, "dominated": STOP, "worse": STOP, "fast": STOP}
    assert decisions["multi"] == {"accurate": CONTINUE, "dominated": STOP, "worse": STOP, "fast": CONTINUE}


def test_a_rung_keeps_the_top_ceil_n_over_rf_by_rank():
    sched = scheduler(("val_acc", "latency_ms"), ("max", "min"), rf=3)
    # each new trial is dominated by all before it: kept only while it places within ceil(n / 3)
    values = [(0.9, 1.0), (0.8, 2.0), (0.7, 3.0), (0.6, 4.0)]
    decisions = [
        sched.on_trial_result(None, add(sched, f"t{i}"), {"epoch": 1, "val_acc": acc, "latency_ms": lat})
        for i, (acc, lat) in enumerate(values)
    ]
    # n=1: 1 kept, place 0; n=2: 1 kept, place 1; n=3: 1 kept, place 2; n=4: 2 kept, place 3
    assert decisions == [CONTINUE, STOP, STOP, STOP]
    fresh = scheduler(("val_acc", "latency_ms"), ("max", "min"), rf=3)
    for i, (acc, lat) in enumerate([(0.6, 4.0), (0.7, 3.0), (0.8, 2.0), (0.9, 1.0)]):  # each better than all
        assert fresh.on_trial_result(None, add(fresh, f"t{i}"), {"epoch": 1, "val_acc": acc, "latency_ms": lat}) == (
            CONTINUE
        )


def test_several_objectives_keep_baselines_and_stop_at_max_t():
    sched = scheduler(("val_acc", "latency_ms"), ("max", "min"))
    best, base = add(sched, "best"), add(sched, "base", baseline=1)
    assert sched.on_trial_result(None, best, {"epoch": 1, "val_acc": 0.9, "latency_ms": 1.0}) == CONTINUE
    assert sched.on_trial_result(None, base, {"epoch": 1, "val_acc": 0.1, "latency_ms": 9.0}) == CONTINUE
    assert sched.on_trial_result(None, best, {"epoch": 8, "val_acc": 0.9, "latency_ms": 1.0}) == STOP


# -- rungs at unfreeze boundaries -----------------------------------------------------------------


def _lp_ft_run(phase_aware: bool) -> list[str]:
    """A full-fine-tuning trial sets the bar; an lp_ft trial probes (frozen) for 2 epochs, then leaps."""
    sched = scheduler(phase_aware=phase_aware)
    leader, probe = add(sched, "leader", unfreeze="full"), add(sched, "probe", unfreeze="lp_ft", lp_epochs=2)
    for epoch, acc in ((1, 0.6), (2, 0.7), (3, 0.75), (4, 0.8)):
        sched.on_trial_result(None, leader, {"epoch": epoch, "val_acc": acc, "frozen_groups": 0})
    decisions = []
    for epoch, acc, frozen in ((1, 0.2, 5), (2, 0.3, 5), (3, 0.8, 0), (4, 0.85, 0)):
        decisions.append(sched.on_trial_result(None, probe, {"epoch": epoch, "val_acc": acc, "frozen_groups": frozen}))
        if decisions[-1] == STOP:
            break
    return decisions


def test_plain_asha_stops_a_probing_lp_ft_trial_at_its_first_rung():
    assert _lp_ft_run(phase_aware=False) == [STOP]


def test_phase_aware_rungs_wait_for_the_first_fully_trainable_epoch():
    assert _lp_ft_run(phase_aware=True) == [CONTINUE, CONTINUE, CONTINUE, CONTINUE]


def test_phase_aware_judges_the_waiting_trial_at_the_rung_it_passed_with_its_trainable_value():
    sched = scheduler(phase_aware=True)
    leader, slow = add(sched, "leader", unfreeze="full"), add(sched, "slow", unfreeze="gradual")
    sched.on_trial_result(None, leader, {"epoch": 1, "val_acc": 0.9, "frozen_groups": 0})
    sched.on_trial_result(None, leader, {"epoch": 2, "val_acc": 0.9, "frozen_groups": 0})
    assert sched.on_trial_result(None, slow, {"epoch": 1, "val_acc": 0.2, "frozen_groups": 2}) == CONTINUE
    assert sched.on_trial_result(None, slow, {"epoch": 2, "val_acc": 0.3, "frozen_groups": 1}) == CONTINUE
    rungs = dict(sched._brackets[0]._rungs)
    assert "slow" not in rungs[1] and "slow" not in rungs[2]  # nothing recorded while it waited
    assert sched.on_trial_result(None, slow, {"epoch": 3, "val_acc": 0.4, "frozen_groups": 0}) == STOP
    assert rungs[2]["slow"] == pytest.approx(0.4)  # the latest rung it passed, against the leader's epoch 2


def test_a_frozen_schedule_is_not_transitional_and_is_judged_as_usual():
    sched = scheduler(phase_aware=True)
    leader, frozen = add(sched, "leader", unfreeze="full"), add(sched, "frozen", unfreeze="frozen")
    sched.on_trial_result(None, leader, {"epoch": 1, "val_acc": 0.9, "frozen_groups": 0})
    assert sched.on_trial_result(None, frozen, {"epoch": 1, "val_acc": 0.1, "frozen_groups": 5}) == STOP
