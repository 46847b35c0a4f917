"""Transfer policy: which layer groups keep pretrained weights, and which of them train when.

Semantics (DESIGN.md section 5): the first k body groups keep their source weights, the rest
stay randomly initialised, the head is always new. Transferred groups follow an unfreeze
schedule; re-initialised groups and the head always train.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from trainables.hyperparams import UNFREEZE_MODES
from trainables.models import LayerGroups


def resolve_transfer_layers(value: float | int, num_body_groups: int) -> int:
    """A float in [0, 1] is a fraction of the body groups (rounded); an int is a count."""
    if isinstance(value, bool) or value < 0:
        raise ValueError(f"transfer_layers must be a fraction in [0, 1] or a count >= 0, got {value=}")
    if isinstance(value, float):
        if value > 1.0:
            raise ValueError(f"a fractional transfer_layers must be in [0, 1], got {value=}")
        return int(math.floor(value * num_body_groups + 0.5))
    if value > num_body_groups:
        warnings.warn(
            f"transfer_layers={value} exceeds the {num_body_groups} body groups; using {num_body_groups}",
            stacklevel=2,
        )
        return num_body_groups
    return int(value)


def transfer_weights(model: nn.Module, source: dict[str, torch.Tensor], groups: LayerGroups, k: int) -> None:
    """Copy the source weights of the first k body groups into `model`, leaving the rest as they are."""
    keys = [key for group in groups.body[:k] for key in group]
    missing = [key for key in keys if key not in source]
    if missing:
        raise ValueError(f"source weights lack {len(missing)} transferred tensors, e.g. {missing[0]!r}")
    target = model.state_dict()
    mismatched = [key for key in keys if source[key].shape != target[key].shape]
    if mismatched:
        key = mismatched[0]
        raise ValueError(
            f"source tensor {key!r} has shape {tuple(source[key].shape)}, model has {tuple(target[key].shape)}"
        )
    model.load_state_dict({key: source[key] for key in keys}, strict=False)


def frozen_group_count(
    mode: str, *, epoch: int, k: int, num_body_groups: int, unfreeze_every: int = 1, lp_epochs: int = 1
) -> int:
    """How many body groups, counted from the input, are frozen during `epoch` (1-based)."""
    if mode == "frozen":
        return k
    if mode == "full":
        return 0
    if mode == "gradual":  # ULMFiT: one more transferred group from the top every `unfreeze_every` epochs
        return max(0, k - (epoch - 1) // unfreeze_every)
    if mode == "lp_ft":  # Kumar et al. 2022: linear probe (head only), then everything
        return num_body_groups if epoch <= lp_epochs else 0
    raise ValueError(f"unknown unfreeze mode {mode!r}; expected one of {UNFREEZE_MODES}")


class Freezer:
    """Applies a frozen-prefix of layer groups to a model.

    Frozen parameters get `requires_grad=False` (so they get no gradient and the optimizer
    skips them) and frozen BatchNorm layers stay in eval mode, so their running statistics
    do not move. Unlike timm's `freeze()`, no module is swapped, so one optimizer built at
    the start covers groups that are unfrozen later.
    """

    def __init__(self, model: nn.Module, groups: LayerGroups):
        self.model = model
        self.groups = groups
        self.num_frozen = 0
        params = dict(model.named_parameters())
        self._group_params = [[params[k] for k in keys if k in params] for keys in groups.body]
        self._group_norms: list[list[nn.Module]] = [[] for _ in groups.body]
        for name, module in model.named_modules():
            if isinstance(module, nn.modules.batchnorm._NormBase) and module.track_running_stats:
                gid = groups.group_of(f"{name}.running_mean")
                if gid is not None:
                    self._group_norms[gid].append(module)

    def freeze_first(self, n: int) -> None:
        self.num_frozen = n
        for gid, params in enumerate(self._group_params):
            for p in params:
                p.requires_grad_(gid >= n)
        self._hold_frozen_norms()

    def train(self) -> None:
        """`model.train()`, except for the BatchNorm layers of frozen groups."""
        self.model.train()
        self._hold_frozen_norms()

    def _hold_frozen_norms(self) -> None:
        for gid, norms in enumerate(self._group_norms):
            for norm in norms:
                norm.train(self.model.training and gid >= self.num_frozen)
