"""The frozen-feature cache: splits equal the whole model, cached trials equal uncached ones."""

import pytest
import ray
import torch
from ray import tune
from ray.tune.search import BasicVariantGenerator

from trainables.data import load_digits_task
from trainables.feature_cache import (
    FeatureCache,
    applies,
    release_shared_features,
    shared_stats,
    split_model,
)
from trainables.finetune import finetune
from trainables.hyperparams import with_defaults
from trainables.loop import train_one_epoch
from trainables.models import create_backbone, layer_groups
from trainables.transfer import Freezer
from trainables.transforms import data_config, eval_transform, loader

DEMO_BACKBONES = ("test_resnet", "mobilenetv3_small_050", "test_vit", "test_convnext")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and lose much when the cores are busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _frozen_model(backbone: str, num_frozen: int | None = None):
    torch.manual_seed(0)
    model = create_backbone(backbone, 5, dropout=0.3)
    groups = layer_groups(model)
    freezer = Freezer(model, groups)
    freezer.freeze_first(len(groups.body) if num_frozen is None else num_frozen)
    freezer.train()  # as in a trial: frozen BatchNorm held in eval, the rest training
    return model, groups, freezer


@pytest.mark.parametrize("backbone", DEMO_BACKBONES)
def test_split_at_every_depth_equals_the_whole_model(backbone):
    model, groups, freezer = _frozen_model(backbone)
    images = torch.randn(2, 3, 32, 32)
    num_body = len(groups.body)
    for k in sorted({1, num_body // 2, num_body - 1, num_body}):
        freezer.freeze_first(k)
        freezer.train()
        split = split_model(model, groups, k, images)
        assert split is not None, f"no split of {backbone} after {k} frozen groups"
        assert (split.cut is None) == (k == num_body), "all body groups frozen: the suffix is the classifier only"
        model.eval()  # features are computed in eval mode
        with torch.no_grad():
            assert torch.allclose(split.suffix(split.prefix(images)), model(images), rtol=1e-4, atol=1e-5)
        freezer.train()
        trainable = {name for name, p in model.named_parameters() if p.requires_grad}
        assert trainable, "the head always trains"
        if split.cut is not None:  # the cut falls between groups: every frozen group before it, no trainable one
            prefix_modules = [name for name, _ in split.chain[: split.cut]]
            assert not any(p.startswith(tuple(m + "." for m in prefix_modules)) for p in trainable)


def test_a_stochastic_or_batch_dependent_prefix_is_not_split():
    model, groups, freezer = _frozen_model("test_vit", 3)
    images = torch.randn(4, 3, 32, 32)
    assert split_model(model, groups, 3, images) is not None
    model.pos_drop.p = 0.5  # dropout inside the frozen prefix: features differ every epoch
    assert split_model(model, groups, 3, images) is None

    model, groups, _ = _frozen_model("test_resnet", 3)
    model.train()  # BatchNorm of frozen groups on batch statistics: features depend on the batch
    assert split_model(model, groups, 3, images) is None


@pytest.mark.parametrize(
    "change",
    [
        {"augment": "light"},
        {"augment": "strong"},
        {"mixup": 0.2},
        {"cutmix": 1.0},
        {"hflip": 0.5},
        {"drop_path": 0.1},
        {"unfreeze": "full"},
        {"unfreeze": "gradual"},
        {"feature_cache": False},
    ],
)
def test_no_cache_when_inputs_to_the_prefix_are_random_or_it_is_not_frozen(change):
    assert applies(with_defaults({"unfreeze": "frozen"}))
    assert applies(with_defaults({"unfreeze": "lp_ft"}))
    cfg = with_defaults({"backbone": "test_resnet", "unfreeze": "frozen", **change})
    assert not applies(cfg)
    model, groups, _ = _frozen_model("test_resnet", 3)
    task = load_digits_task([5, 6], train_per_class=4, val_per_class=2, seed=0)
    cache = FeatureCache(model, groups, task, data_config(model, 32), cfg, device=torch.device("cpu"))
    assert cache.epoch(3) is None


def test_an_epoch_on_cached_features_trains_the_same_weights_as_one_on_images():
    task = load_digits_task([5, 6, 7], train_per_class=6, val_per_class=4, seed=0)
    cfg = with_defaults({"backbone": "test_resnet", "unfreeze": "frozen", "dropout": 0.3})
    states = []
    for cached in (False, True):
        model, groups, freezer = _frozen_model("test_resnet", 3)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        transform = eval_transform(data_config(model, 32))
        cache = FeatureCache(model, groups, task, data_config(model, 32), cfg, device=torch.device("cpu"))
        torch.manual_seed(7)  # the same dropout masks, unless the cache consumed random numbers
        epoch = cache.epoch(freezer.num_frozen) if cached else None
        assert (epoch is not None) == cached
        net = epoch.suffix if cached else model
        batches = (
            epoch.train_batches(batch_size=4, shuffle_seed=3)
            if cached
            else loader(task.train, transform, batch_size=4, shuffle_seed=3)
        )
        train_one_epoch(net, batches, optimizer, device=torch.device("cpu"))
        states.append(model.state_dict())
    assert all(torch.allclose(states[0][key].float(), states[1][key].float(), atol=1e-6) for key in states[0])


MAX_EPOCHS = 2
BASE = {
    "backbone": "test_resnet",
    "transfer_layers": 3,
    "unfreeze": "frozen",
    "lp_epochs": 1,
    "lr": 3e-3,
    "dropout": 0.3,  # random masks after the prefix must line up in both paths
    "batch_size": 8,
    "max_epochs": MAX_EPOCHS,
    "weights": "pretrain",
    "seed": 0,
    "feature_cache": True,
}
CASES = {  # name -> changes to BASE; run in this order, one at a time
    "frozen": {},
    "frozen, uncached": {"feature_cache": False},
    "frozen, same prefix": {"lr": 1e-2},  # same backbone, prefix weights, data and preprocessing
    "lp_ft": {"unfreeze": "lp_ft"},
    "lp_ft, uncached": {"unfreeze": "lp_ft", "feature_cache": False},
}


@pytest.fixture(scope="module")
def trials(tmp_path_factory):
    """Real Tune trials of the real trainable; per case, its metrics per epoch. Also the shared registry's stats."""
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        release_shared_features()  # a fresh registry, whatever ran before in this Ray job
        torch.manual_seed(1)
        source = {"test_resnet": ray.put(create_backbone("test_resnet", 5).state_dict())}
        task = load_digits_task([5, 6, 7], train_per_class=8, val_per_class=20, seed=0)
        points = [{**BASE, **change} for change in CASES.values()]
        tuner = tune.Tuner(
            tune.with_parameters(finetune, task=task, image_size=32, source_weights=source),
            param_space=dict(BASE),
            tune_config=tune.TuneConfig(
                num_samples=len(points),
                search_alg=BasicVariantGenerator(points_to_evaluate=points, max_concurrent=1),
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(storage_path=str(tmp_path_factory.mktemp("ray")), verbose=0),
        )
        results = tuner.fit()
        assert not results.errors, results.errors
        by_case = {}
        for result in results:
            name = next(n for n, change in CASES.items() if result.config == {**BASE, **change})
            by_case[name] = result.metrics_dataframe.sort_values("epoch")
        yield by_case, shared_stats()
    finally:
        release_shared_features()
        if started:
            ray.shutdown()


@pytest.mark.integration
@pytest.mark.parametrize("schedule", ["frozen", "lp_ft"])
def test_cached_trials_report_the_same_metrics_as_uncached_ones(trials, schedule):
    by_case, _ = trials
    cached, uncached = by_case[schedule], by_case[f"{schedule}, uncached"]
    assert list(cached["epoch"]) == list(uncached["epoch"]) == list(range(1, MAX_EPOCHS + 1))
    probe = MAX_EPOCHS if schedule == "frozen" else BASE["lp_epochs"]  # lp_ft: cached during its probe only
    assert list(cached["feature_cache"]) == [1] * probe + [0] * (MAX_EPOCHS - probe)
    assert list(uncached["feature_cache"]) == [0] * MAX_EPOCHS
    for metric in ("train_loss", "val_loss", "val_acc", "val_f1", "drift/head"):
        assert list(cached[metric]) == pytest.approx(list(uncached[metric]), rel=1e-4, abs=1e-6), metric


@pytest.mark.integration
def test_a_later_trial_with_the_same_prefix_reuses_the_shared_features(trials):
    by_case, stats = trials
    assert list(by_case["frozen, same prefix"]["feature_cache"]) == [1] * MAX_EPOCHS
    # train and val features of the frozen prefix and of the lp_ft probe; the later frozen trial found both
    assert stats == {"entries": 4, "hits": 2}


def test_cuda_switches_leave_cpu_training_unchanged():
    task = load_digits_task([5, 6], train_per_class=4, val_per_class=2, seed=0)
    states = []
    for numerics in ({}, {"precision": "bf16", "channels_last": True}):
        torch.manual_seed(0)
        model = create_backbone("test_resnet", 2)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        batches = loader(task.train, eval_transform(data_config(model, 32)), batch_size=4, shuffle_seed=0)
        train_one_epoch(model, batches, optimizer, device=torch.device("cpu"), **numerics)
        states.append(model.state_dict())
    assert all(torch.equal(states[0][key], states[1][key]) for key in states[0])
    assert states[1]["conv1.0.weight"].is_contiguous()  # no channels_last on CPU
