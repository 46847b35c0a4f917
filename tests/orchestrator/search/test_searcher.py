"""The fidelity bridge, driven in Tune's call order with synthetic results (no Ray cluster needed).

Tune hands every result to `on_trial_result` except the one that stops or ends the trial, which
goes only to `on_trial_complete` (tests/integration/test_contract.py pins that order on real Tune)."""

import optuna
import pytest
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from orchestrator.search import (
    DefineByRun,
    FidelityOptunaSearch,
    epoch_values,
    make_scheduler,
    open_study_storage,
    violates,
)
from orchestrator.spec import load_spec
from tests.orchestrator.spec.test_loading import GOOD
from trainables.budgets import infeasible_result

MAX_EPOCHS = 3


def _searcher(cls, spec, **extra):
    return cls(
        space=DefineByRun(spec, {"max_epochs": MAX_EPOCHS, "seed": 0, "weights": "pretrain"}),
        metric="val_acc",
        mode="max",
        sampler=optuna.samplers.RandomSampler(seed=0),
        **extra,
    )


def _run(searcher, trial_id, accs, flush=True, **complete):
    config = searcher.suggest(trial_id)
    assert config["max_epochs"] == MAX_EPOCHS
    results = [{"epoch": epoch, "val_acc": acc, "training_iteration": epoch} for epoch, acc in enumerate(accs, 1)]
    for result in results[:-1]:
        searcher.on_trial_result(trial_id, result)
    searcher.on_trial_complete(trial_id, result=complete.pop("result", results[-1]), **complete)
    if flush and hasattr(searcher, "flush_tells"):
        searcher.flush_tells()  # what the ledger does once a signed snapshot holds the ending


@pytest.fixture
def spec(write_spec):
    return load_spec(write_spec(GOOD))


def test_trial_stopped_early_is_pruned_with_its_intermediate_values(spec):
    searcher = _searcher(FidelityOptunaSearch, spec, max_epochs=MAX_EPOCHS)
    _run(searcher, "early", [0.3, 0.5])
    (trial,) = searcher._ot_study.get_trials()
    assert trial.state == TrialState.PRUNED
    assert trial.intermediate_values == {1: 0.3, 2: 0.5}


def test_trial_that_reached_max_epochs_is_complete_with_its_final_value(spec):
    searcher = _searcher(FidelityOptunaSearch, spec, max_epochs=MAX_EPOCHS)
    _run(searcher, "full", [0.3, 0.5, 0.7])
    (trial,) = searcher._ot_study.get_trials()
    assert trial.state == TrialState.COMPLETE and trial.value == pytest.approx(0.7)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"error": True},
        {"result": {"epoch": 2, "val_acc": 0.5, "diverged": 1}},
        {"result": {"epoch": 3, "val_acc": float("nan")}},
    ],
)
def test_errored_diverged_or_nan_trials_fail(spec, kwargs):
    searcher = _searcher(FidelityOptunaSearch, spec, max_epochs=MAX_EPOCHS)
    _run(searcher, "bad", [0.3, 0.5, 0.6], **kwargs)
    assert searcher._ot_study.get_trials()[0].state == TrialState.FAIL


def test_stock_ray_searcher_calls_early_stopped_trials_complete(spec):
    """The behaviour the bridge exists to fix: a 2-epoch value recorded as a final one."""
    stock = _searcher(OptunaSearch, spec)
    _run(stock, "early", [0.3, 0.5])
    (trial,) = stock._ot_study.get_trials()
    assert trial.state == TrialState.COMPLETE and trial.value == pytest.approx(0.5)
    assert trial.intermediate_values == {1: 0.3}  # and the epoch that ended it never reached the study


def test_steps_are_epochs_not_training_iterations(spec):
    """A restored trial's training_iteration restarts; epochs do not, so steps stay unique."""
    searcher = _searcher(FidelityOptunaSearch, spec, max_epochs=MAX_EPOCHS)
    searcher.suggest("t")
    searcher.on_trial_result("t", {"epoch": 2, "val_acc": 0.4, "training_iteration": 1})
    searcher.on_trial_complete("t", {"epoch": 3, "val_acc": 0.6, "training_iteration": 2})
    searcher.flush_tells()
    assert searcher._ot_study.get_trials()[0].intermediate_values == {2: 0.4, 3: 0.6}


def test_the_result_that_ends_a_trial_is_its_last_intermediate_value(spec):
    """Tune gives the stopping result to on_trial_complete only; the study must still see that epoch."""
    searcher = _searcher(FidelityOptunaSearch, spec, max_epochs=MAX_EPOCHS)
    _run(searcher, "stopped", [0.3, 0.4])
    _run(searcher, "finished", [0.3, 0.5, 0.7])
    stopped, finished = searcher._ot_study.get_trials()
    assert max(stopped.intermediate_values) == 2 and stopped.state == TrialState.PRUNED
    assert finished.intermediate_values == {1: 0.3, 2: 0.5, 3: 0.7} and finished.value == pytest.approx(0.7)


def test_an_ending_reaches_the_study_only_when_the_snapshot_holding_it_is_saved(spec):
    searcher = _searcher(FidelityOptunaSearch, spec, max_epochs=MAX_EPOCHS)
    _run(searcher, "t", [0.3, 0.5, 0.7], flush=False)
    (trial,) = searcher._ot_study.get_trials()
    assert trial.state == TrialState.RUNNING and trial.intermediate_values == {1: 0.3, 2: 0.5}
    searcher.flush_tells()
    assert searcher._ot_study.get_trials()[0].state == TrialState.COMPLETE


def test_with_mlflow_a_trial_is_told_only_once_it_names_its_run(spec):
    searcher = _searcher(FidelityOptunaSearch, spec, max_epochs=MAX_EPOCHS, require_links=True)
    _run(searcher, "t", [0.3, 0.5, 0.7])  # MLflow was down when it started: no run to name yet
    assert searcher._ot_study.get_trials()[0].state == TrialState.RUNNING
    searcher.link_run("t", "run-1")
    searcher.flush_tells()
    (trial,) = searcher._ot_study.get_trials()
    assert trial.state == TrialState.COMPLETE
    assert trial.user_attrs == {"ray.trial_id": "t", "mlflow.run_id": "run-1"}
    assert searcher.optuna_number("t") == 0 and searcher.optuna_number("unknown") is None


def test_asha_uses_epochs_as_time(spec):
    scheduler = make_scheduler(spec)
    assert scheduler._time_attr == "epoch" and scheduler._max_t == spec.early_stopping.max_epochs


class _Trial:
    def __init__(self, trial_id, config):
        self.trial_id, self.config = trial_id, config


def test_asha_never_stops_a_baseline_before_max_epochs(spec):
    scheduler = make_scheduler(spec)
    scheduler.set_search_properties("val_acc", "max")
    good, baseline = _Trial("good", {}), _Trial("base", {"baseline": 0})
    plain = _Trial("plain", {})
    for trial in (good, baseline, plain):
        scheduler.on_trial_add(None, trial)
    scheduler.on_trial_result(None, good, {"epoch": 1, "val_acc": 0.9})
    assert scheduler.on_trial_result(None, plain, {"epoch": 1, "val_acc": 0.1}) == "STOP"
    assert scheduler.on_trial_result(None, baseline, {"epoch": 1, "val_acc": 0.1}) == "CONTINUE"


def test_baselines_are_marked_in_the_trial_config(spec):
    searcher = _searcher(
        FidelityOptunaSearch, spec, max_epochs=MAX_EPOCHS, points_to_evaluate=[dict(p) for p in spec.search.baselines]
    )
    first, second = searcher.suggest("a"), searcher.suggest("b")
    assert first["baseline"] == 0 and first["backbone"] == "test_resnet" and first["unfreeze"] == "frozen"
    assert "baseline" not in second


def test_a_trial_the_study_already_finished_is_left_alone_after_a_restart(spec):
    """A snapshot older than the study (not possible with deferred tells, but a study outlives drivers)."""
    searcher = _searcher(FidelityOptunaSearch, spec, max_epochs=MAX_EPOCHS)
    _run(searcher, "t", [0.3, 0.5, 0.7])
    searcher._completed_trials.discard("t")  # what the stale snapshot remembers
    searcher.on_trial_result("t", {"epoch": 3, "val_acc": 0.1})
    searcher.on_trial_complete("t", {"epoch": 3, "val_acc": 0.1})
    searcher.flush_tells()
    (trial,) = searcher._ot_study.get_trials()
    assert trial.state == TrialState.COMPLETE and trial.value == pytest.approx(0.7)


def test_results_of_trials_the_searcher_never_suggested_are_ignored(spec):
    searcher = _searcher(FidelityOptunaSearch, spec, max_epochs=MAX_EPOCHS)
    searcher.on_trial_result("unknown", {"epoch": 1, "val_acc": 0.5})
    searcher.on_trial_complete("unknown", {"epoch": 1, "val_acc": 0.5})
    assert searcher._ot_study.get_trials() == []


def test_a_study_storage_is_a_journal_file_or_a_database_and_outlives_its_handle(tmp_path):
    for location in (str(tmp_path / "optuna.journal"), f"sqlite:///{tmp_path / 'optuna.db'}"):
        study = optuna.create_study(study_name="s", storage=open_study_storage(location), direction="maximize")
        study.tell(study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), 0.5)
        reopened = optuna.load_study(study_name="s", storage=open_study_storage(location))
        assert [(t.state, t.value) for t in reopened.trials] == [(TrialState.COMPLETE, 0.5)], location
    assert isinstance(open_study_storage(str(tmp_path / "optuna.journal")), optuna.storages.JournalStorage)


@pytest.mark.parametrize("location", ["optuna.journal", "sqlite:///{tmp}/optuna.db"])
def test_a_trial_asked_for_after_the_last_snapshot_is_handed_out_again_not_duplicated(spec, tmp_path, location):
    """Driver killed after Optuna handed out a trial but before Ray's snapshot recorded it."""
    location = location.format(tmp=tmp_path) if "://" in location else str(tmp_path / location)
    storage = open_study_storage(location)
    searcher = _searcher(FidelityOptunaSearch, spec, max_epochs=MAX_EPOCHS, storage=storage, study_name="s")
    _run(searcher, "recorded", [0.3, 0.5, 0.7])
    searcher.save(str(tmp_path / "snapshot.pkl"))
    lost = searcher.suggest("lost")  # the driver dies here

    # the new driver opens the study afresh
    restored = _searcher(
        FidelityOptunaSearch, spec, max_epochs=MAX_EPOCHS, storage=open_study_storage(location), study_name="s"
    )
    restored.restore(str(tmp_path / "snapshot.pkl"))
    assert restored.suggest("new") == lost
    assert restored._ot_trials["new"].number == searcher._ot_trials["lost"].number
    _run(restored, "new", [0.4, 0.6, 0.8])
    restored.suggest("another")  # nothing left unrecorded: a new trial
    assert restored._ot_trials["another"].number == 2
    states = [t.state for t in restored._ot_study.get_trials()]
    assert states == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.RUNNING]


def test_baselines_are_enqueued_once_however_often_a_driver_builds_the_searcher(spec, tmp_path):
    location = str(tmp_path / "optuna.journal")
    points = [dict(p) for p in spec.search.baselines]
    for _ in range(2):  # the second driver, on the same study
        searcher = _searcher(
            FidelityOptunaSearch,
            spec,
            max_epochs=MAX_EPOCHS,
            storage=open_study_storage(location),
            study_name="s",
            points_to_evaluate=points,
        )
    assert len(searcher._ot_study.get_trials()) == len(points)


def test_trials_a_driver_asked_for_before_dying_are_handed_out_by_the_next_one(spec, tmp_path):
    """Killed before Ray's first snapshot: the study holds RUNNING trials no Ray trial owns."""
    location = str(tmp_path / "optuna.journal")
    first = _searcher(
        FidelityOptunaSearch, spec, max_epochs=MAX_EPOCHS, storage=open_study_storage(location), study_name="s"
    )
    lost = [first.suggest(f"lost{i}") for i in range(2)]
    second = _searcher(
        FidelityOptunaSearch, spec, max_epochs=MAX_EPOCHS, storage=open_study_storage(location), study_name="s"
    )
    assert [second.suggest("a"), second.suggest("b")] == lost
    second.suggest("c")
    trials = second._ot_study.get_trials()
    assert len(trials) == 3 and [t.user_attrs["ray.trial_id"] for t in trials] == ["a", "b", "c"]


# -- several objectives and budgets ---------------------------------------------------------------


def _searcher_with(spec, **kwargs):
    """`_searcher` with its metric and mode replaced."""
    return FidelityOptunaSearch(
        space=DefineByRun(spec, {"max_epochs": MAX_EPOCHS, "seed": 0, "weights": "pretrain"}),
        sampler=optuna.samplers.RandomSampler(seed=0),
        max_epochs=MAX_EPOCHS,
        **kwargs,
    )


def _results(accs, latency=2.0, **extra):
    return [
        {"epoch": e, "val_acc": a, "latency_ms": latency, "total_params": 1e5, **extra} for e, a in enumerate(accs, 1)
    ]


def _drive(searcher, trial_id, results):
    searcher.suggest(trial_id)
    for result in results[:-1]:
        searcher.on_trial_result(trial_id, result)
    searcher.on_trial_complete(trial_id, result=results[-1])
    searcher.flush_tells()


def test_several_objectives_keep_every_epochs_values_and_tell_the_final_ones(spec):
    searcher = _searcher_with(spec, metric=["val_acc", "latency_ms"], mode=["max", "min"])
    _drive(searcher, "full", _results([0.3, 0.5, 0.7], latency=2.0))
    _drive(searcher, "early", _results([0.2, 0.4], latency=1.0))
    full, early = searcher._ot_study.get_trials()
    assert len(searcher._ot_study.directions) == 2
    assert full.state == TrialState.COMPLETE and full.values == pytest.approx([0.7, 2.0])
    assert epoch_values(full) == {1: (0.3, 2.0), 2: (0.5, 2.0), 3: (0.7, 2.0)}  # the last epoch included
    assert full.intermediate_values == {}  # Optuna keeps none for several objectives
    assert early.state == TrialState.PRUNED and early.values is None
    assert epoch_values(early) == {1: (0.2, 1.0), 2: (0.4, 1.0)}


def test_a_trial_over_budget_is_pruned_with_its_constraint_violated_and_no_values(spec):
    searcher = _searcher_with(spec, metric="val_acc", mode="max", budgets={"total_params": 2e5})
    _drive(searcher, "fits", _results([0.3, 0.5, 0.7]))
    _drive(searcher, "over", [infeasible_result({"total_params": 5e5, "macs": 1e6})])
    fits, over = searcher._ot_study.get_trials()
    assert fits.state == TrialState.COMPLETE and fits.constraints == {"total_params": pytest.approx(-0.5)}
    assert over.state == TrialState.PRUNED and over.value is None and over.intermediate_values == {}
    assert over.constraints == {"total_params": pytest.approx(1.5)} and violates(over) and not violates(fits)
    assert over.user_attrs["costs"] == {"total_params": 5e5, "macs": 1e6}


def test_an_infeasible_result_is_infeasible_whatever_its_nan_objectives(spec):
    searcher = _searcher_with(spec, metric=["val_acc", "latency_ms"], mode=["max", "min"], budgets={"latency_ms": 1.0})
    _drive(searcher, "slow", [infeasible_result({"total_params": 1e5, "latency_ms": 3.0})])
    (trial,) = searcher._ot_study.get_trials()
    assert trial.state == TrialState.PRUNED and epoch_values(trial) == {}  # not FAIL, as a diverged trial would be
    assert trial.constraints == {"latency_ms": pytest.approx(2.0)}


def test_the_sweeps_searcher_puts_budgets_in_every_trial_config(write_spec):
    from orchestrator.search import make_searcher

    text = GOOD + "constraints: {params: {max: 4.0e5}, latency_ms: {max: 2.5}}\n"
    searcher = make_searcher(load_spec(write_spec(text)), "s", None)
    config = searcher.suggest("t")
    assert config["max_params"] == 4.0e5 and config["max_latency_ms"] == 2.5 and "max_macs" not in config
    assert searcher._budgets == {"total_params": 4.0e5, "latency_ms": 2.5}


def test_the_study_names_its_objectives_for_optuna_dashboard(write_spec):
    from orchestrator.search import make_searcher

    single = make_searcher(load_spec(write_spec(GOOD)), "one", None)
    objectives = "objective: [{metric: val_acc, mode: max}, {metric: latency_ms, mode: min}]\n"
    two = make_searcher(load_spec(write_spec(GOOD + objectives)), "two", None)
    assert single._ot_study.metric_names == ["val_acc"]
    assert two._ot_study.metric_names == ["val_acc", "latency_ms"]
