"""The sweep report's pure parts: Pareto front, ASHA rungs, best ranges, importances, HTML embedding,
and its command's errors. tests/integration/test_report.py checks a report of a real sweep."""

import base64
import io
import re

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from PIL import Image

from orchestrator.cli import main
from orchestrator.insights import (
    Report,
    TrialRow,
    ValueRange,
    asha_rungs,
    best_ranges,
    pareto_front,
    plots,
    render_html,
)
from orchestrator.insights.report.analysis import study_importances
from orchestrator.insights.report.model import Importances
from tests.orchestrator.spec.test_loading import GOOD


def _dominated(i, costs, values):
    return any(
        costs[j] <= costs[i] and values[j] >= values[i] and (costs[j] < costs[i] or values[j] > values[i])
        for j in range(len(costs))
    )


def test_pareto_front_keeps_exactly_the_undominated_points():
    costs = [1.0, 2.0, 2.0, 3.0, 4.0, 0.5]
    values = [0.5, 0.7, 0.6, 0.7, 0.9, 0.4]
    # (2, 0.6) loses to (2, 0.7); (3, 0.7) loses to (2, 0.7); the rest trade cost for accuracy
    assert pareto_front(costs, values) == [0, 1, 4, 5]


def test_pareto_front_on_random_points_matches_the_definition():
    rng = np.random.default_rng(0)
    costs, values = rng.integers(0, 10, 60).tolist(), rng.integers(0, 10, 60).tolist()  # many ties
    front = pareto_front(costs, values)
    assert front == [i for i in range(60) if not _dominated(i, costs, values)]
    assert pareto_front([], []) == []


@pytest.mark.parametrize(
    ("grace", "factor", "max_epochs", "rungs"),
    [
        (1, 3, 10, [1, 3, 9]),
        (2, 3, 10, [2, 6]),
        (1, 2, 4, [1, 2]),
        (3, 2, 20, [3, 6, 12]),
        (1, 3, 243, [1, 3, 9, 27, 81]),
    ],
)
def test_asha_rungs_are_where_ray_may_stop_a_trial(grace, factor, max_epochs, rungs):
    # 243 = 3**5 is no rung: Ray computes the rung count in floating point and stops one short
    assert asha_rungs(grace, factor, max_epochs) == rungs


def _study(values, states=None):
    """A real in-memory study with known trials: lr, unfreeze -> value."""
    study = optuna.create_study(direction="maximize")
    for i, (lr, unfreeze, value) in enumerate(values):
        state = (states or {}).get(i, optuna.trial.TrialState.COMPLETE)
        study.add_trial(
            optuna.trial.create_trial(
                params={"lr": lr, "unfreeze": unfreeze},
                distributions={
                    "lr": FloatDistribution(1e-4, 1e-1, log=True),
                    "unfreeze": CategoricalDistribution(["frozen", "full"]),
                },
                value=value if state == optuna.trial.TrialState.COMPLETE else None,
                state=state,
                intermediate_values={1: 0.99} if state == optuna.trial.TrialState.PRUNED else None,
            )
        )
    return study


def test_best_ranges_span_the_top_quartile_of_completed_trials():
    values = [(10 ** -(1 + i / 4), "full" if i % 3 else "frozen", i / 10) for i in range(12)]
    study = _study(values + [(0.09, "frozen", 0.0)], states={12: optuna.trial.TrialState.PRUNED})
    ranges = best_ranges(study.get_trials(), ["lr", "unfreeze", "missing"], mode="max")
    top = sorted(values, key=lambda v: -v[2])[:3]  # 12 completed -> top quartile is 3; the pruned one is ignored
    assert ranges["lr"] == ValueRange(low=min(v[0] for v in top), high=max(v[0] for v in top))
    assert set(ranges["unfreeze"].values) == {v[1] for v in top}
    assert "missing" not in ranges
    # minimising turns it around
    bottom = sorted(values, key=lambda v: v[2])[:3]
    assert best_ranges(study.get_trials(), ["lr"], mode="min")["lr"].high == max(v[0] for v in bottom)


def test_importances_explain_why_they_are_missing():
    url = optuna.storages.InMemoryStorage()
    values = {"none": [], "one": [(1e-3, "full", 0.5)], "same": [(1e-3, "full", 0.5), (1e-2, "frozen", 0.5)]}
    for name, trials in values.items():
        study = optuna.create_study(study_name=name, storage=url, direction="maximize")
        for trial in _study(trials).get_trials():
            study.add_trial(trial)

    def note(name):
        return study_importances(url, name, "max", {})[0].note

    assert note("nope") == "the Optuna study 'nope' was not found"
    assert "at least 2 completed trials; this sweep has 0" in note("none")
    assert "at least 2 completed trials; this sweep has 1" in note("one")
    assert "scored the same" in note("same")


def test_importances_rank_the_parameter_that_drives_the_value():
    url = optuna.storages.InMemoryStorage()
    study = optuna.create_study(study_name="s", storage=url, direction="maximize")
    rng = np.random.default_rng(0)
    for trial in _study(
        [(float(lr), str(rng.choice(["frozen", "full"])), float(np.log10(lr))) for lr in 10 ** rng.uniform(-4, -1, 16)]
    ).get_trials():
        study.add_trial(trial)
    found, ranges = study_importances(url, "s", "max", {})
    assert list(found.values)[0] == "lr" and found.values["lr"] > 0.8
    assert sum(found.values.values()) == pytest.approx(1.0)
    assert found.trials == 16 and set(found.spread) == set(found.values)
    assert set(ranges) == set(found.values)
    # 16 trials for 2 parameters: fewer than the ten per parameter a forest needs, so the page says so
    assert "16 completed trials for 2 parameters" in found.caveat


def test_a_conditional_parameter_gets_its_importance_within_the_trials_that_searched_it():
    url = optuna.storages.InMemoryStorage()
    study = optuna.create_study(study_name="c", storage=url, direction="maximize")
    rng = np.random.default_rng(1)
    lr_dist = FloatDistribution(1e-4, 1e-1, log=True)
    for _ in range(30):
        lr, every = float(10 ** rng.uniform(-4, -1)), int(rng.integers(1, 4))
        gradual = bool(rng.integers(0, 2))
        params = {"lr": lr, "unfreeze": "gradual" if gradual else "full"}
        distributions = {"lr": lr_dist, "unfreeze": CategoricalDistribution(["full", "gradual"])}
        if gradual:
            params["unfreeze_every"] = every
            distributions["unfreeze_every"] = optuna.distributions.IntDistribution(1, 3)
        value = every / 3 if gradual else 0.5  # among gradual trials, unfreeze_every drives the value
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=value))
    found, _ = study_importances(url, "c", "max", {"unfreeze_every": "unfreeze=gradual"})
    assert "unfreeze_every" not in found.values  # not every trial has it
    when, value, trials = found.within["unfreeze_every"]
    assert (
        when == "unfreeze=gradual" and value > 0.5 and trials == sum("unfreeze_every" in t.params for t in study.trials)
    )


def _row(trial_id, backbone, acc):
    return TrialRow(
        run_id=f"run-{trial_id}",
        trial_id=trial_id,
        params={"backbone": backbone, "lr": "0.001"},
        outcome="completed",
        epochs=2,
        curve=[(1, acc / 2), (2, acc)],
        best_epoch=2,
        best=acc,
        val_acc=acc,
        val_f1=acc,
        total_params=1000.0,
        latency_ms=1.5,
    )


def _report(rows, **kwargs):
    return Report(
        experiment="exp",
        sweep_id="sweep-1",
        parent_run_id="parent",
        metric="val_acc",
        mode="max",
        max_epochs=2,
        searched=["backbone", "lr"],
        trials=rows,
        best_run_id=rows[0].run_id,
        rungs=[1, 2],
        importances=Importances(trials=1, note="importances need at least 2 completed trials; this sweep has 1"),
        best_ranges={},
        spent_epochs=4,
        full_epochs=4,
        prediction=None,
        **kwargs,
    )


def test_html_is_self_contained_with_the_pngs_embedded_and_text_escaped():
    rows = [_row("a1", "<script>", 0.9), _row("b2", "test_vit", 0.5)]
    png = plots.learning_curves({"a1": rows[0].curve}, [rows[1].curve], rungs=[1], max_epochs=2, metric="val_acc")
    page = render_html(_report(rows, figures={"learning_curves.png": png}))
    sources = re.findall(r"src='([^']*)'", page)
    assert len(sources) == 1 and sources[0].startswith("data:image/png;base64,")
    embedded = base64.b64decode(sources[0].removeprefix("data:image/png;base64,"))
    assert embedded == png
    Image.open(io.BytesIO(embedded)).verify()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "href=" not in page and "http" not in page  # nothing fetched from elsewhere
    assert "No importances: importances need at least 2 completed trials" in page
    assert "Predicted against achieved" not in page  # hidden without scores


def test_the_terminal_summary_fits_120_columns_and_marks_the_best_trial():
    from orchestrator.insights import terminal_summary

    rows = [_row(f"t{i}", "vit_base_patch16_224.augreg2_in21k_ft_in1k" * 2, 0.9 - i / 10) for i in range(3)]
    for row in rows:
        row.params.update({f"param_{j}": "0.0001234" for j in range(12)})
    report = _report(rows)
    report.searched = list(rows[0].params)
    text = terminal_summary(report)
    assert max(len(line) for line in text.splitlines()) <= 120
    assert "#1 t0  val_acc 0.9  val_f1 0.9 at epoch 2 of 2, completed  [best]" in text
    assert "#2 t1 " in text and "[best]" not in text.split("#2 t1")[1]
    assert "param_11=0.0001234" in text  # every searched value is shown, wrapped


def test_report_without_a_sweep_is_one_line_and_writes_nothing(tmp_path, monkeypatch, write_spec, capsys):
    monkeypatch.chdir(tmp_path)
    spec = write_spec(GOOD)
    assert main(["report", str(spec)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {spec}: experiment: no sweep of 'unit' in {tmp_path / 'runs'} to report on"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]
    assert main(["report", str(tmp_path / "missing.yaml")]) == 2
