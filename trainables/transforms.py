"""Preprocessing and augmentation from each backbone's pretrained config (timm's factories)."""

from __future__ import annotations

import torch
from timm.data import create_transform, resolve_data_config
from torch import nn
from torch.utils.data import DataLoader, Dataset

from trainables.data import ImageSplit
from trainables.tensor_pipeline import DecodedBatches, TensorTransform


def data_config(model: nn.Module, image_size: int | None) -> dict:
    """Mean, std, interpolation and input size from the backbone's pretrained config;
    `image_size` (the spec's) overrides the size."""
    cfg = resolve_data_config({}, model=model)
    if image_size is not None:
        cfg["input_size"] = (3, image_size, image_size)
    return {**cfg, "crop_pct": 1.0}


def _common(cfg: dict) -> dict:
    keys = ("input_size", "interpolation", "mean", "std")
    return {key: cfg[key] for key in keys}


def eval_transform(cfg: dict):
    """Deterministic: resize the whole image to the input size (no crop), then normalise."""
    return create_transform(**_common(cfg), is_training=False, crop_pct=1.0)


def model_input_transform(cfg: dict):
    """PIL image -> float tensor in [0, 1] at the input size: what the logged MLflow model takes
    (it normalises by itself)."""
    return eval_transform({**cfg, "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)})


def train_transform(cfg: dict, augment: str, *, hflip: float = 0.0):
    """`none` is the eval transform; `light` random-resized crops; `strong` adds RandAugment
    and random erasing."""
    if augment == "none":
        return eval_transform(cfg)
    strong = augment == "strong"
    return create_transform(
        **_common(cfg),
        is_training=True,
        hflip=hflip,
        color_jitter=0.0,
        scale=(0.25, 1.0) if strong else (0.6, 1.0),
        # mmax9: at magnitude 10 timm's increasing posterize keeps 0 bits, which Pillow refuses
        auto_augment="rand-m9-mstd0.5-inc1-mmax9" if strong else None,
        re_prob=0.25 if strong else 0.0,
    )


class TransformedSplit(Dataset):
    def __init__(self, split: ImageSplit, transform):
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int):
        return self.transform(self.split.image(index)), int(self.split.labels[index])


def loader(
    split: ImageSplit,
    transform,
    *,
    batch_size: int,
    shuffle_seed: int | None = None,
    workers: int = 0,
    pin_memory: bool | None = None,
    device: torch.device | None = None,
) -> DataLoader | DecodedBatches:
    """(images, labels) batches. An image folder decoded for the sweep is fed from its pixels, the
    transform's steps run on tensors on `device` (trainables.tensor_pipeline); otherwise in-memory
    splits load in the main process and image folders use `workers` processes, with pinned memory
    (for asynchronous copies) by default when CUDA is available."""
    if split.decoded is not None:
        on_tensors = TensorTransform.of(transform, device)
        if on_tensors is not None:
            return DecodedBatches(split, on_tensors, batch_size=batch_size, shuffle_seed=shuffle_seed)
    workers = 0 if split.paths is None else workers
    generator = torch.Generator().manual_seed(shuffle_seed) if shuffle_seed is not None else None
    return DataLoader(
        TransformedSplit(split, transform),
        batch_size=batch_size,
        shuffle=shuffle_seed is not None,
        generator=generator,
        num_workers=workers,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        persistent_workers=False,
    )
