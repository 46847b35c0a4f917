"""The fidelity bridge, driven with synthetic results (no Ray cluster needed)."""

import optuna
import pytest
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from orchestrator.search import FidelityOptunaSearch, make_scheduler, open_study_storage
from orchestrator.space import DefineByRun
from orchestrator.spec import load_spec
from tests.orchestrator.test_spec import GOOD

MAX_EPOCHS = 3


def _searcher(cls, spec, **extra):
    return cls(
        space=DefineByRun(spec, {"max_epochs": MAX_EPOCHS, "seed": 0, "weights": "pretrain"}),
        metric="val_acc",
        mode="max",
        sampler=optuna.samplers.RandomSampler(seed=0),
        **extra,
    )


def _run(searcher, trial_id, accs, **complete):
    config = searcher.suggest(trial_id)
    assert config["max_epochs"] == MAX_EPOCHS
    for epoch, acc in enumerate(accs, start=1):
        result = {"epoch": epoch, "val_acc": acc, "training_iteration": epoch}
        searcher.on_trial_result(trial_id, result)
    searcher.on_trial_complete(trial_id, result=complete.pop("result", result), **complete)


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


def test_steps_are_epochs_not_training_iterations(spec):
    """A restored trial's training_iteration restarts; epochs do not, so steps stay unique."""
    searcher = _searcher(FidelityOptunaSearch, spec, max_epochs=MAX_EPOCHS)
    searcher.suggest("t")
    searcher.on_trial_result("t", {"epoch": 2, "val_acc": 0.4, "training_iteration": 1})
    searcher.on_trial_complete("t", {"epoch": 2, "val_acc": 0.4})
    assert searcher._ot_study.get_trials()[0].intermediate_values == {2: 0.4}


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
    """Driver killed after Optuna was told but before Ray's snapshot: Ray re-runs the trial."""
    searcher = _searcher(FidelityOptunaSearch, spec, max_epochs=MAX_EPOCHS)
    _run(searcher, "t", [0.3, 0.5, 0.7])
    searcher._completed_trials.discard("t")  # what the stale snapshot remembers
    searcher.on_trial_result("t", {"epoch": 3, "val_acc": 0.1})
    searcher.on_trial_complete("t", {"epoch": 3, "val_acc": 0.1})
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
