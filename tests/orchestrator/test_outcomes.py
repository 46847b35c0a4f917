"""The one outcome rule, and a trial's summary from its records."""

from orchestrator.outcomes import better, summarize, trial_outcome


def test_outcome_of_a_trials_last_result():
    assert trial_outcome({"epoch": 3}, errored=False, max_epochs=3) == "completed"
    assert trial_outcome({"epoch": 2}, errored=False, max_epochs=3) == "pruned"
    assert trial_outcome({"epoch": 2, "diverged": 1}, errored=False, max_epochs=3) == "diverged"
    assert trial_outcome({"epoch": 3, "val_acc": float("nan")}, errored=False, max_epochs=3, metric="val_acc") == (
        "diverged"
    )
    assert trial_outcome({"epoch": 3}, errored=True, max_epochs=3) == "errored"
    assert trial_outcome(None, errored=False, max_epochs=3) == "pruned"  # stopped before its first result


def test_summary_takes_the_final_and_the_best_epoch_by_the_objectives_mode():
    records = [{"epoch": 1, "val_loss": 0.9}, {"epoch": 2, "val_loss": 0.5}, {"epoch": 3, "val_loss": 0.7}]
    low = summarize(records, errored=False, max_epochs=3, metric="val_loss", mode="min")
    assert (low.outcome, low.last_epoch, low.final, low.best, low.best_epoch) == ("completed", 3, 0.7, 0.5, 2)
    high = summarize(records, errored=False, max_epochs=4, metric="val_loss", mode="max")
    assert (high.outcome, high.best, high.best_epoch) == ("pruned", 0.9, 1)
    assert summarize([], errored=True, max_epochs=3, metric="val_loss", mode="max").final is None


def test_better_respects_the_mode():
    assert better(0.9, 0.8, "max") and better(0.7, 0.8, "min") and better(0.1, None, "max")
    assert not better(0.8, 0.8, "max")


def test_a_trial_over_budget_is_infeasible_before_anything_else_but_an_error():
    from trainables.budgets import infeasible_result

    costs = infeasible_result({"total_params": 9e6})  # every objective NaN: not diverged
    assert trial_outcome(costs, errored=False, max_epochs=3, metric="val_acc") == "infeasible"
    assert trial_outcome(costs, errored=True, max_epochs=3) == "errored"
    summary = summarize([costs], errored=False, max_epochs=3, metric="val_acc", mode="max")
    assert (summary.outcome, summary.last_epoch, summary.final, summary.best) == ("infeasible", 0, None, None)


def test_with_several_objectives_any_non_finite_one_diverges_and_finals_hold_each():
    last = {"epoch": 3, "val_acc": 0.8, "latency_ms": float("inf")}
    assert trial_outcome(last, errored=False, max_epochs=3, metric=("val_acc", "latency_ms")) == "diverged"
    records = [{"epoch": 1, "val_acc": 0.5, "latency_ms": 2.0}, {"epoch": 2, "val_acc": 0.7, "latency_ms": 2.0}]
    summary = summarize(records, errored=False, max_epochs=2, metric="val_acc", mode="max", others=("latency_ms",))
    assert summary.outcome == "completed" and summary.finals == (0.7, 2.0) and summary.final == 0.7
