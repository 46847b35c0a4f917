"""Learning rates, regularisers and measurements of the fine-tuning recipe."""

import pytest
import torch

from trainables.data import load_digits_task
from trainables.hyperparams import with_defaults
from trainables.loop import evaluate, train_one_epoch
from trainables.measure import latency_ms_per_image, multiply_accumulates, snapshot, weight_drift
from trainables.models import create_backbone, layer_groups
from trainables.optimization import LR_FLOOR, make_optimizer, make_schedule
from trainables.regularizers import L2SP, make_mixup
from trainables.transfer import Freezer, frozen_group_count, transfer_weights
from trainables.transforms import data_config, eval_transform, loader, train_transform


def _cfg(**overrides) -> dict:
    return with_defaults({"max_epochs": 10, "lr": 0.01, **overrides})


def test_layer_decay_scales_each_group_below_the_head_and_the_head_keeps_the_full_rate():
    model = create_backbone("test_resnet", 3)
    optimizer = make_optimizer(model, _cfg(layer_decay=0.5))
    make_schedule(optimizer, _cfg(layer_decay=0.5)).step(0)
    groups = len(layer_groups(model).body)
    rates = sorted({round(g["lr"], 12) for g in optimizer.param_groups})
    assert rates[-1] == pytest.approx(0.01)  # the head
    assert rates[0] == pytest.approx(0.01 * 0.5**groups)  # the stem, `groups` steps below it
    assert len(make_optimizer(model, _cfg(layer_decay=1.0)).param_groups) <= 2  # no decay: one rate


def test_the_schedule_warms_up_from_one_percent_then_decays_by_cosine_to_one_percent():
    optimizer = make_optimizer(create_backbone("test_resnet", 3), _cfg(warmup_epochs=2))
    schedule = make_schedule(optimizer, _cfg(warmup_epochs=2))
    rates = []
    for epoch in range(1, 11):
        schedule.step(epoch - 1)  # as the trial does before each epoch
        rates.append(max(g["lr"] for g in optimizer.param_groups))
    assert rates[0] == pytest.approx(0.01 * LR_FLOOR)  # warmup starts at 1 %
    assert rates[0] < rates[1] < rates[2] == pytest.approx(0.01)  # and reaches the peak when it ends
    assert all(a > b for a, b in zip(rates[2:], rates[3:], strict=False))  # then only decays
    assert rates[-1] > 0.01 * LR_FLOOR and rates[-1] < 0.05 * 0.01  # near the floor at the last epoch


def test_l2sp_gradient_points_toward_the_pretrained_weights():
    model = create_backbone("test_resnet", 3)
    groups = layer_groups(model)
    source = {k: v.clone() for k, v in create_backbone("test_resnet", 3).state_dict().items()}
    transfer_weights(model, source, groups, 2)
    l2sp = L2SP(model, groups, 2, strength=0.1)
    with torch.no_grad():
        for p in l2sp.params:
            p.add_(torch.randn_like(p) * 0.1)  # move away from the pretrained point
    l2sp.penalty().backward()
    for p, ref in zip(l2sp.params, l2sp.reference, strict=True):
        step = -p.grad  # gradient descent direction
        assert torch.sum(step * (ref - p.detach())) > 0, "descent must move toward the reference"
    # only transferred groups are regularised
    transferred = {k for g in groups.body[:2] for k in g}
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in l2sp.params} <= transferred


def test_gradual_unfreezes_the_right_group_at_the_right_epoch_also_after_a_resume():
    model = create_backbone("test_resnet", 3)
    groups = layer_groups(model)
    freezer = Freezer(model, groups)
    k, every = 4, 2

    def trainable_groups(epoch):
        freezer.freeze_first(frozen_group_count("gradual", epoch=epoch, k=k, num_body_groups=5, unfreeze_every=every))
        params = dict(model.named_parameters())
        return [all(params[key].requires_grad for key in keys if key in params) for keys in groups.body]

    history = {epoch: trainable_groups(epoch) for epoch in range(1, 10)}
    assert history[1] == [False, False, False, False, True]  # the untransferred top group always trains
    assert history[3] == [False, False, False, True, True]  # the top transferred group unfreezes first
    assert history[7] == [False, True, True, True, True]
    assert history[9] == [True, True, True, True, True]
    # a resumed trial recomputes the same state from the epoch alone
    fresh = Freezer(model, groups)
    fresh.freeze_first(frozen_group_count("gradual", epoch=5, k=k, num_body_groups=5, unfreeze_every=every))
    assert fresh.num_frozen == 2 and trainable_groups(5) == history[5]


def test_lp_ft_trains_only_the_head_during_the_probe():
    task = load_digits_task([5, 6, 7], train_per_class=4, val_per_class=2, seed=0)
    model = create_backbone("test_resnet", 3)
    groups = layer_groups(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    freezer = Freezer(model, groups)
    freezer.freeze_first(frozen_group_count("lp_ft", epoch=1, k=5, num_body_groups=5, lp_epochs=2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    freezer.train()
    batches = loader(task.train, eval_transform(data_config(model, 32)), batch_size=6, shuffle_seed=0)
    train_one_epoch(model, batches, optimizer, device=torch.device("cpu"))
    after = model.state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed and changed <= set(groups.head)


def test_drift_is_zero_before_training_and_names_each_group():
    model = create_backbone("test_vit", 3)
    groups = layer_groups(model)
    start = snapshot(model)
    drift = weight_drift(model, start, groups)
    assert len(drift) == len(groups.body) + 1 and all(v == 0 for v in drift.values())
    assert "drift/head" in drift and any(k.startswith("drift/00.") for k in drift)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    assert max(weight_drift(model, start, groups).values()) > 0


def test_cost_measurements_are_positive_and_scale_with_input():
    model = create_backbone("test_resnet", 3)
    small = multiply_accumulates(model, (3, 32, 32), torch.device("cpu"))
    large = multiply_accumulates(model, (3, 64, 64), torch.device("cpu"))
    assert 0 < small < large and large == pytest.approx(4 * small, rel=0.1)
    assert latency_ms_per_image(model, (3, 32, 32), torch.device("cpu"), min_run_time_s=0.02) > 0


def test_mixup_and_strong_augmentation_train_and_evaluate():
    task = load_digits_task([5, 6, 7], train_per_class=5, val_per_class=5, seed=0)
    model = create_backbone("test_resnet", 3)
    cfg = data_config(model, 32)
    batches = loader(task.train, train_transform(cfg, "strong"), batch_size=5, shuffle_seed=1)
    mixup = make_mixup(0.4, 1.0, 0.1, num_classes=3)
    stats = train_one_epoch(
        model, batches, torch.optim.AdamW(model.parameters()), device=torch.device("cpu"), mixup=mixup
    )
    assert stats.loss > 0 and stats.images_per_s > 0
    metrics = evaluate(model, loader(task.val, eval_transform(cfg), batch_size=8), device=torch.device("cpu"))
    assert set(metrics) == {"acc", "loss", "f1", "precision", "recall"} and 0 <= metrics["acc"] <= 1


def test_augmentation_none_is_deterministic_and_strong_is_not():
    task = load_digits_task([5, 6], train_per_class=2, val_per_class=1, seed=0)
    cfg = data_config(create_backbone("test_resnet", 2), 32)
    image = task.train.image(0)
    assert torch.equal(train_transform(cfg, "none")(image), train_transform(cfg, "none")(image))
    strong = train_transform(cfg, "strong")
    torch.manual_seed(0)
    outputs = [strong(image) for _ in range(4)]
    assert any(not torch.equal(outputs[0], o) for o in outputs[1:])


def test_the_loop_applies_label_smoothing_to_hard_and_to_mixed_labels():
    task = load_digits_task([5, 6, 7], train_per_class=8, val_per_class=2, seed=0)
    losses = {}
    for smoothing in (0.0, 0.2):
        for mixed in (False, True):
            torch.manual_seed(0)
            model = create_backbone("test_resnet", 3)
            frozen = torch.optim.SGD(model.parameters(), lr=0.0)  # the loss of the same weights each time
            batches = loader(task.train, eval_transform(data_config(model, 32)), batch_size=8, shuffle_seed=0)
            mixup = make_mixup(0.2, 0.0, smoothing, 3) if mixed else None
            torch.manual_seed(1)
            stats = train_one_epoch(
                model, batches, frozen, device=torch.device("cpu"), label_smoothing=smoothing, mixup=mixup
            )
            losses[smoothing, mixed] = stats.loss
    assert losses[0.2, False] != pytest.approx(losses[0.0, False])
    assert losses[0.2, True] != pytest.approx(losses[0.0, True])


def test_strong_augmentation_takes_every_magnitude_randaugment_draws():
    """RandAugment's magnitude is clipped at its maximum often (m9 with std 0.5): there timm's increasing
    posterize once asked Pillow to keep 0 bits, and a trial died on its first such image."""
    import random

    from PIL import Image

    transform = train_transform(
        {
            "input_size": (3, 32, 32),
            "interpolation": "bilinear",
            "crop_pct": 1.0,
            "mean": (0.5,) * 3,
            "std": (0.5,) * 3,
        },
        "strong",
    )
    image = Image.new("RGB", (32, 32), (120, 60, 200))
    random.seed(0)
    for _ in range(3000):  # about 40 draws at the clipped maximum, each with a 1 in 8 chance of posterize
        assert transform(image).shape == (3, 32, 32)
