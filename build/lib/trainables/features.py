"""Frozen features of a pretrained backbone on target images, for ranking backbones before training."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from trainables.data import ImageSplit
from trainables.models import classifier_prefixes, create_backbone, layer_groups
from trainables.transfer import transfer_weights
from trainables.transforms import data_config, eval_transform, loader


@dataclass(frozen=True)
class Features:
    features: np.ndarray  # [N, D] pooled pre-logits (timm's forward_head(..., pre_logits=True))
    source_logits: np.ndarray | None  # [N, Z] from the source classifier; None if the weights have none


def source_model(backbone: str, state: dict[str, torch.Tensor]) -> nn.Module:
    """`backbone` with every body group transferred from `state`, as a trial with
    transfer_layers=1.0 starts, plus the source classifier when `state` has one."""
    model = create_backbone(backbone, 0)
    groups = layer_groups(model)
    transfer_weights(model, state, groups, len(groups.body))
    head = {k: v for k, v in state.items() if k.startswith(classifier_prefixes(model))}
    weight = next((v for k, v in head.items() if k.endswith("weight") and v.ndim == 2), None)
    if weight is not None and weight.shape[0] > 0:
        model.reset_classifier(int(weight.shape[0]))
        missing, unexpected = model.load_state_dict(head, strict=False)
        missing = [k for k in missing if k.startswith(classifier_prefixes(model))]
        if missing or unexpected:
            raise ValueError(f"{backbone}: source classifier does not fit (missing {missing}, unexpected {unexpected})")
    return model.eval()


@torch.inference_mode()
def extract_features(
    backbone: str,
    state: dict[str, torch.Tensor],
    split: ImageSplit,
    *,
    image_size: int | None,
    batch_size: int = 256,
    device: torch.device | None = None,
) -> Features:
    """Pooled pre-logit features of `split` (eval preprocessing, as trials validate), and the
    source classifier's logits when the weights include one."""
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = source_model(backbone, state).to(device)
    has_head = model.num_classes > 0
    features, logits = [], []
    for images, _ in loader(split, eval_transform(data_config(model, image_size)), batch_size=batch_size):
        feature_map = model.forward_features(images.to(device))
        features.append(model.forward_head(feature_map, pre_logits=True).float().cpu())
        if has_head:
            logits.append(model.forward_head(feature_map).float().cpu())
    return Features(
        features=torch.cat(features).numpy(),
        source_logits=torch.cat(logits).numpy() if has_head else None,
    )
