"""The define-by-run space: conditions, fixed values, ordering, baselines."""

import optuna
import pytest

from orchestrator.errors import SpecError
from orchestrator.search import DefineByRun
from orchestrator.spec import condition_order, load_spec
from tests.orchestrator.spec.test_loading import GOOD

RUN_KEYS = {"max_epochs": 3, "seed": 0, "weights": "pretrain"}


def _sample(spec, n=40, seed=0):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    space = DefineByRun(spec, RUN_KEYS)
    out = []
    for _ in range(n):
        trial = study.ask()
        fixed = space(trial)
        out.append((dict(trial.params), fixed))
        study.tell(trial, 0.0)
    return out


def test_conditional_parameter_only_when_condition_holds(write_spec):
    samples = _sample(load_spec(write_spec(GOOD)))
    modes = {params["unfreeze"] for params, _ in samples}
    assert modes == {"frozen", "gradual"}
    for params, _ in samples:
        assert ("unfreeze_every" in params) == (params["unfreeze"] == "gradual")


def test_fixed_values_and_run_keys_are_returned_not_searched(write_spec):
    for params, fixed in _sample(load_spec(write_spec(GOOD)), n=3):
        assert "batch_size" not in params
        assert fixed == {"batch_size": 16, **RUN_KEYS}


def test_parents_are_suggested_before_children(write_spec):
    # Declared child-first in the file; the order still puts unfreeze first.
    text = GOOD.replace("  unfreeze: {type: categorical, choices: [frozen, gradual]}\n", "")
    text = text.replace("  lr:", "  unfreeze: {type: categorical, choices: [frozen, gradual]}\n  lr:")
    order = condition_order(load_spec(write_spec(text)))
    assert order.index("unfreeze") < order.index("unfreeze_every")


def test_condition_cycle_is_rejected(write_spec):
    text = GOOD.replace(
        "unfreeze: {type: categorical, choices: [frozen, gradual]}",
        "unfreeze: {type: categorical, choices: [frozen, gradual], when: {backbone: test_resnet}}",
    ).replace(
        "backbone: {type: categorical, choices: [test_resnet, test_vit]}",
        "backbone: {type: categorical, choices: [test_resnet, test_vit], when: {unfreeze: frozen}}",
    )
    with pytest.raises(SpecError, match="cycle"):
        load_spec(write_spec(text))


def test_baseline_violating_its_condition_is_rejected(write_spec):
    text = GOOD.replace("{backbone: test_resnet, unfreeze: frozen}", "{unfreeze: frozen, unfreeze_every: 2}")
    with pytest.raises(SpecError, match=r"baselines\[0\]\.unfreeze_every.*only searched when"):
        load_spec(write_spec(text))


def test_grid_needs_categorical_parameters_and_enough_points(write_spec):
    grid = (
        "experiment: g\nweights: {source: none}\nsearch: {algorithm: grid, trials: 4}\n"
        "space:\n  backbone: test_resnet\n  unfreeze: {type: categorical, choices: [frozen, full]}\n"
        "  transfer_layers: {type: categorical, choices: [0.0, 1.0]}\n"
    )
    assert load_spec(write_spec(grid, "ok.yaml")).search.trials == 4
    with pytest.raises(SpecError, match="grid has 4 points"):
        load_spec(write_spec(grid.replace("trials: 4", "trials: 5"), "big.yaml"))
    with pytest.raises(SpecError, match="every searched parameter categorical"):
        load_spec(write_spec(grid + "  lr: {type: float, low: 0.001, high: 0.01}\n", "float.yaml"))
