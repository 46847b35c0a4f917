"""timm backbones, their layer groups, and the preprocessing they expect."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import timm
import torch
import torch.nn.functional as F
from timm.data import resolve_data_config

# timm's public `group_parameters` groups parameters only; transfer needs every state-dict key (BatchNorm's
# running statistics too), grouped by the same matcher, which timm keeps in this private helper.
from timm.models._manipulate import group_with_matcher
from torch import nn


def create_backbone(name: str, num_classes: int, *, dropout: float = 0.0, drop_path: float = 0.0) -> nn.Module:
    """A randomly initialised timm model with a new head sized to the target classes.

    `drop_path` (stochastic depth) is passed only when set, so families without it still build
    by default, and fail loudly when it is asked of them."""
    extra = {"drop_path_rate": drop_path} if drop_path > 0 else {}
    return timm.create_model(name, pretrained=False, num_classes=num_classes, drop_rate=dropout, **extra)


@dataclass(frozen=True)
class LayerGroups:
    """A model's state-dict keys split into timm's fine-grained layer groups.

    `body` is ordered from the input (stem) to the output; `head` is the classifier, which
    is always new for the target task.
    """

    body: tuple[tuple[str, ...], ...]
    head: tuple[str, ...]

    def group_of(self, key: str) -> int | None:
        """Index of the body group holding `key`, or None for the head."""
        for i, keys in enumerate(self.body):
            if key in keys:
                return i
        return None


def classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    classifier = model.pretrained_cfg.get("classifier") or "fc"
    names = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    return tuple(name + "." for name in names)


def layer_groups(model: nn.Module) -> LayerGroups:
    """Groups from `model.group_matcher(coarse=False)`, with the classifier split off."""
    keys = list(model.state_dict().keys())
    prefixes = classifier_prefixes(model)
    head = tuple(k for k in keys if k.startswith(prefixes))
    body_keys = [(k, None) for k in keys if not k.startswith(prefixes)]
    grouped = group_with_matcher(body_keys, model.group_matcher(coarse=False))
    body = tuple(tuple(grouped[gid]) for gid in sorted(grouped) if grouped[gid])
    return LayerGroups(body=body, head=head)


def state_digest(model: nn.Module, keys: list[str]) -> str:
    """A content hash of some of the model's tensors (a frozen prefix's weights, say)."""
    state, digest = model.state_dict(), hashlib.sha256()
    for key in sorted(keys):
        tensor = state[key].detach().cpu().contiguous().reshape(-1)
        digest.update(f"{key}:{tensor.dtype}:{tuple(state[key].shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy())
    return digest.hexdigest()


class Normalize(nn.Module):
    """Maps images in [0, 1] to the backbone's expected input distribution."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] == 1 and self.mean.shape[1] == 3:
            images = images.expand(-1, 3, -1, -1)  # grayscale into an RGB backbone
        return (images - self.mean) / self.std


def normalization(model: nn.Module) -> Normalize:
    """Mean and std from the backbone's pretrained config (timm's resolve_data_config)."""
    cfg = resolve_data_config({}, model=model)
    return Normalize(tuple(cfg["mean"]), tuple(cfg["std"]))


class ImageClassifier(nn.Module):
    """What gets logged to MLflow: RGB images in [0, 1] of any height and width in, class logits out
    (`class_names[i]` is logit i). Images are resized to the input size the trials trained at, so a
    photo of any size works; for exactly the training preprocessing, resize with
    `trainables.transforms.model_input_transform` first (then the resize here changes nothing)."""

    def __init__(self, backbone: nn.Module, class_names: tuple[str, ...], input_size: tuple[int, int]):
        super().__init__()
        self.preprocess = normalization(backbone)
        self.backbone = backbone
        self.class_names = list(class_names)
        self.input_size = tuple(input_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        images = F.interpolate(images, size=self.input_size, mode="bilinear", antialias=True, align_corners=False)
        return self.backbone(self.preprocess(images))
