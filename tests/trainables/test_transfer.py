"""Transfer policy on tiny timm models of six families (random init, saved "source" weights)."""

import pytest
import torch
import torch.nn.functional as F

from trainables.models import create_backbone, layer_groups
from trainables.transfer import Freezer, frozen_group_count, resolve_transfer_layers, transfer_weights

FAMILIES = ["test_resnet", "test_efficientnet", "mobilenetv3_small_050", "test_convnext", "regnetx_002", "test_vit"]


def _source_and_target(name, num_source_classes=4, num_classes=3):
    torch.manual_seed(1)
    source = create_backbone(name, num_source_classes).state_dict()
    torch.manual_seed(2)
    target = create_backbone(name, num_classes)
    return {k: v.clone() for k, v in source.items()}, target


def _random_init(tensor):
    return tensor.is_floating_point() and tensor.numel() > 1 and float(tensor.std()) > 0


def _group_equal(model, source, keys):
    state = model.state_dict()
    return [torch.equal(state[k], source[k]) for k in keys if state[k].is_floating_point()]


@pytest.mark.parametrize("name", FAMILIES)
def test_groups_partition_every_tensor_and_split_off_the_head(name):
    model = create_backbone(name, 3)
    groups = layer_groups(model)
    keys = [k for g in groups.body for k in g] + list(groups.head)
    assert sorted(keys) == sorted(model.state_dict())
    assert len(groups.body) >= 3
    assert groups.head and all(model.state_dict()[k].shape[0] == 3 for k in groups.head if k.endswith("weight"))


@pytest.mark.parametrize("name", FAMILIES)
def test_first_k_groups_equal_source_and_the_rest_do_not(name):
    source, model = _source_and_target(name)
    groups = layer_groups(model)
    k = len(groups.body) // 2
    transfer_weights(model, source, groups, k)
    for gid, keys in enumerate(groups.body):
        same = _group_equal(model, source, keys)
        if gid < k:
            assert all(same), f"group {gid} should hold source weights"
        elif any(_random_init(model.state_dict()[key]) for key in keys):  # norms start at 1/0 in both
            assert not all(same), f"group {gid} should be re-initialised"
    # the head is new: sized for the target, never copied
    assert all(model.state_dict()[key].shape != source[key].shape for key in groups.head if key.endswith("weight"))


@pytest.mark.parametrize("name", FAMILIES)
def test_training_step_leaves_frozen_groups_and_their_norm_statistics_unchanged(name):
    source, model = _source_and_target(name)
    groups = layer_groups(model)
    k = len(groups.body) - 1
    transfer_weights(model, source, groups, k)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    freezer = Freezer(model, groups)
    freezer.freeze_first(k)
    frozen_keys = [key for g in groups.body[:k] for key in g]
    before = {key: model.state_dict()[key].clone() for key in frozen_keys}
    trainable_before = {key: model.state_dict()[key].clone() for key in groups.body[k] + groups.head}

    freezer.train()
    images, labels = torch.randn(6, 3, 32, 32), torch.tensor([0, 1, 2, 0, 1, 2])
    loss = F.cross_entropy(model(images), labels)
    optimizer.zero_grad()
    loss.backward()
    params = dict(model.named_parameters())
    assert all(params[key].grad is None for key in frozen_keys if key in params)
    optimizer.step()

    after = model.state_dict()
    assert all(torch.equal(after[key], before[key]) for key in frozen_keys), "a frozen tensor moved"
    assert any(not torch.equal(after[key], value) for key, value in trainable_before.items()), "nothing trained"


def test_frozen_batchnorm_stays_in_eval_mode_after_train():
    model = create_backbone("test_resnet", 3)
    groups = layer_groups(model)
    freezer = Freezer(model, groups)
    freezer.freeze_first(2)
    freezer.train()
    norms = {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    for name, norm in norms.items():
        gid = groups.group_of(f"{name}.running_mean")
        assert norm.training == (gid >= 2), name


def test_unfreezing_later_needs_no_new_optimizer():
    model = create_backbone("test_resnet", 3)
    groups = layer_groups(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    freezer = Freezer(model, groups)
    freezer.freeze_first(len(groups.body))
    freezer.freeze_first(0)  # unfreeze everything with the same optimizer
    stem = groups.body[0][0]
    before = model.state_dict()[stem].clone()
    freezer.train()
    F.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 0])).backward()
    optimizer.step()
    assert not torch.equal(model.state_dict()[stem], before)


@pytest.mark.parametrize(
    "value,groups,expected", [(0.0, 5, 0), (1.0, 5, 5), (0.5, 5, 3), (0.25, 8, 2), (2, 5, 2), (0, 5, 0)]
)
def test_transfer_layers_fraction_or_count(value, groups, expected):
    assert resolve_transfer_layers(value, groups) == expected


def test_transfer_layers_count_is_clamped_with_a_warning():
    with pytest.warns(UserWarning, match="exceeds"):
        assert resolve_transfer_layers(9, 5) == 5
    with pytest.raises(ValueError):
        resolve_transfer_layers(1.5, 5)


def test_schedules():
    count = lambda mode, epoch, **kw: frozen_group_count(mode, epoch=epoch, k=3, num_body_groups=5, **kw)  # noqa: E731
    assert [count("frozen", e) for e in (1, 5)] == [3, 3]
    assert [count("full", e) for e in (1, 5)] == [0, 0]
    # gradual: one more transferred group every 2 epochs, from the top
    assert [count("gradual", e, unfreeze_every=2) for e in range(1, 9)] == [3, 3, 2, 2, 1, 1, 0, 0]
    # lp_ft: head only (all body groups frozen) for 2 epochs, then everything
    assert [count("lp_ft", e, lp_epochs=2) for e in (1, 2, 3)] == [5, 5, 0]


def test_shape_mismatch_in_source_is_a_clear_error():
    source, model = _source_and_target("test_resnet")
    groups = layer_groups(model)
    key = groups.body[0][0]
    source[key] = torch.zeros(1)
    with pytest.raises(ValueError, match="has shape"):
        transfer_weights(model, source, groups, 1)
