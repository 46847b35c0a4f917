"""Regularisers that know about transfer: L2-SP, and timm's Mixup/CutMix."""

from __future__ import annotations

import torch
from timm.data import Mixup
from torch import nn

from trainables.models import LayerGroups


class L2SP:
    """L2-SP (Li et al., 2018): `strength * sum ||w - w_pretrained||^2` over transferred weights.

    Unlike weight decay, which pulls every weight toward zero, this pulls the transferred
    groups toward the source weights they started from.
    """

    def __init__(
        self,
        model: nn.Module,
        groups: LayerGroups,
        k: int,
        strength: float,
        reference: dict[str, torch.Tensor] | None = None,
    ):
        """`reference`: the pretrained values by name, if the caller already holds a copy;
        otherwise they are copied from `model` now."""
        params = dict(model.named_parameters())
        keys = [key for group in groups.body[:k] for key in group if key in params]
        self.strength = strength
        self.params = [params[key] for key in keys]
        self.reference = [reference[key] if reference else params[key].detach().clone() for key in keys]

    def penalty(self) -> torch.Tensor:
        terms = [(p - ref).pow(2).sum() for p, ref in zip(self.params, self.reference, strict=True) if p.requires_grad]
        if not terms or self.strength == 0:
            return torch.zeros(())
        return self.strength * torch.stack(terms).sum()


def make_mixup(mixup: float, cutmix: float, label_smoothing: float, num_classes: int) -> Mixup | None:
    """timm's Mixup/CutMix (alphas; 0 disables). It also applies label smoothing to the soft targets."""
    if mixup <= 0 and cutmix <= 0:
        return None
    return Mixup(mixup_alpha=mixup, cutmix_alpha=cutmix, label_smoothing=label_smoothing, num_classes=num_classes)
