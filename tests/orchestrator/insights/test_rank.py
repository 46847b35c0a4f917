"""Which backbones a prescreen keeps, and what a rank run records about its data."""

import textwrap

import pytest

from orchestrator.insights import BackboneScore, data_fingerprint, kept_backbones
from orchestrator.spec import load_spec
from trainables.data import load_digits_task

SPEC = textwrap.dedent("""\
    experiment: prescreen
    weights: {source: pretrain, pretrain: {epochs: 1}}
    search:
      trials: 4
      prescreen: {keep_top: 2}
      baselines: [{backbone: test_vit, unfreeze: frozen}]
    space:
      backbone: {type: categorical, choices: [test_resnet, test_vit, test_convnext, test_efficientnet]}
      unfreeze: {type: categorical, choices: [frozen, full]}
""")


def _score(backbone: str, value: float, leep: float | None = None) -> BackboneScore:
    note = "" if leep is not None else "the source weights have no classifier"
    return BackboneScore(backbone, logme=value, leep=leep, feature_dim=8, seconds=0.1, leep_note=note)


@pytest.fixture
def spec(write_spec):
    return load_spec(write_spec(SPEC))


def test_keeps_the_top_k_plus_baseline_backbones_in_the_spec_order(spec):
    scores = [_score("test_efficientnet", -0.1), _score("test_resnet", -0.2), _score("test_vit", -0.9)]
    scores.append(_score("test_convnext", -1.0))
    assert kept_backbones(spec, scores) == ["test_resnet", "test_vit", "test_efficientnet"]
    with_vit_on_top = [_score("test_vit", 0.0), *scores[:2]]  # the baseline's backbone is among the top 2
    assert kept_backbones(spec, with_vit_on_top) == ["test_vit", "test_efficientnet"]


def test_data_fingerprint_names_the_training_data(spec):
    target = load_digits_task([5, 6, 7], train_per_class=4, val_per_class=2, seed=0)
    params = data_fingerprint(spec, target)
    assert params["data.classes"] == "5,6,7" and params["data.train_images"] == "12"
    assert params == data_fingerprint(spec, load_digits_task([5, 6, 7], train_per_class=4, val_per_class=9, seed=0))
    other = load_digits_task([5, 6, 7], train_per_class=4, val_per_class=2, seed=1)  # other training images
    assert data_fingerprint(spec, other)["data.train_sha256"] != params["data.train_sha256"]
