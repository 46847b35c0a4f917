"""Image classification tasks held in memory as tensors.

A task is built once on the driver and shipped to every trial through Ray's object store,
so trials spend no time on loading or resizing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ImageSplit:
    images: torch.Tensor  # float32 [N, C, H, W] in [0, 1]
    labels: torch.Tensor  # int64 [N], indices into TaskData.class_names

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class TaskData:
    train: ImageSplit
    val: ImageSplit
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


DIGITS_CLASSES = tuple(range(10))


def load_digits_task(
    classes: Sequence[int],
    *,
    train_per_class: int | None,
    val_per_class: int | None,
    image_size: int,
    seed: int,
) -> TaskData:
    """scikit-learn's handwritten digits (shipped with the package, no download).

    For each class, a seeded permutation puts the first `train_per_class` images in train
    and up to `val_per_class` of the rest in val; `train_per_class=None` uses every image
    for training and leaves val empty (used for pretraining on a source task).
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    images = F.interpolate(images, size=(image_size, image_size), mode="bilinear", align_corners=False)
    images = images.clamp_(0.0, 1.0)
    targets = digits.target

    rng = np.random.default_rng(seed)
    train_idx, train_lbl, val_idx, val_lbl = [], [], [], []
    for label, cls in enumerate(classes):
        idx = rng.permutation(np.flatnonzero(targets == cls))
        n_train = len(idx) if train_per_class is None else train_per_class
        if n_train > len(idx):
            raise ValueError(f"digit {cls} has only {len(idx)} images, {train_per_class=} asked for more")
        rest = idx[n_train:] if val_per_class is None else idx[n_train : n_train + val_per_class]
        train_idx += idx[:n_train].tolist()
        train_lbl += [label] * n_train
        if train_per_class is not None:
            val_idx += rest.tolist()
            val_lbl += [label] * len(rest)

    return TaskData(
        train=_split(images, train_idx, train_lbl),
        val=_split(images, val_idx, val_lbl),
        class_names=tuple(str(c) for c in classes),
    )


def _split(images: torch.Tensor, idx: list[int], labels: list[int]) -> ImageSplit:
    return ImageSplit(images=images[idx].contiguous(), labels=torch.tensor(labels, dtype=torch.long))


def batches(split: ImageSplit, batch_size: int, *, shuffle_seed: int | None = None):
    """Yield (images, labels) batches; a shuffle seed makes the order reproducible."""
    n = len(split)
    if shuffle_seed is None:
        order = torch.arange(n)
    else:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(shuffle_seed))
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        yield split.images[idx], split.labels[idx]
