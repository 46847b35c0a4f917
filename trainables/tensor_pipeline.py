"""A trial's preprocessing and augmentation of decoded images (`trainables.decoded`), on tensors.

The transform is the trial's own, timm's (`trainables.transforms`); on decoded images each of
its steps runs on a tensor instead of a PIL image, in the same order, drawing the same random
numbers from the same generators, so an epoch sees the same crops, flips and policies:
- timm's random-resized crop draws its box for the image as the file holds it, then crops that
  box, scaled, from the kept pixels (the one difference: it resamples from the input size rather
  than from the file's full size), with Pillow's resampling on the CPU as before, torch's on a GPU;
- torchvision's resize, centre crop, flips and colour jitter run on the tensor as they are; a
  resize to the size the images are kept at is the one done when they were decoded;
- timm's RandAugment takes PIL images only: the crop goes through it as one and back;
- ToTensor, Normalize and timm's random erasing run on the crop's tensor.
A transform with any other step cannot run here (`TensorTransform.of` is None) and its trial
reads images as before. Everything after RandAugment (everything, without it) runs on `device`:
the GPU when the trial has one.
"""

from __future__ import annotations

import random

import numpy as np
import torch
import torchvision.transforms.functional as F
from PIL import Image
from timm.data.auto_augment import RandAugment
from timm.data.random_erasing import RandomErasing
from timm.data.transforms import MaybeToTensor, RandomResizedCropAndInterpolation
from torch.utils.data import DataLoader
from torchvision import transforms

from trainables.data import DecodedImages, ImageSplit

AS_THEY_ARE = (
    transforms.CenterCrop,
    transforms.RandomHorizontalFlip,
    transforms.RandomVerticalFlip,
    transforms.ColorJitter,
    transforms.Normalize,
    RandomErasing,
)
TO_TENSOR = (MaybeToTensor, transforms.ToTensor)
KNOWN = (*AS_THEY_ARE, *TO_TENSOR, transforms.Resize, RandomResizedCropAndInterpolation, RandAugment)
BATCHED = (*TO_TENSOR, transforms.Normalize)  # value by value, drawing no random numbers


class TensorTransform:
    """Images of a decoded split through the steps of a timm transform: each image on its own up to
    the last step that draws random numbers or changes its shape, then the batch through the rest
    (ToTensor and Normalize act value by value, so a batch gets the same bits as its images one by
    one, for less)."""

    def __init__(self, steps: list, device: torch.device):
        self.device = device
        own = [i for i, step in enumerate(steps) if not isinstance(step, BATCHED)]
        split = own[-1] + 1 if own else 0
        self.per_image, self.per_batch = steps[:split], steps[split:]
        pil = [i for i, step in enumerate(steps) if isinstance(step, RandAugment)]
        self._on_device_from = pil[-1] + 1 if pil else 0  # steps before it run on the CPU

    @classmethod
    def of(cls, transform, device: torch.device | None = None) -> TensorTransform | None:
        steps = list(transform.transforms) if isinstance(transform, transforms.Compose) else [transform]
        if not all(isinstance(step, KNOWN) for step in steps):
            return None
        return cls(steps, device or torch.device("cpu"))

    def batch(self, images: DecodedImages, indices: list[int]) -> torch.Tensor:
        """The images at `indices`, transformed, as one [B, C, H, W] tensor on the device."""
        x = torch.stack([self.image(images, index) for index in indices]).to(self.device, non_blocking=True)
        for step in self.per_batch:  # in place: the batch is this call's own
            if isinstance(step, TO_TENSOR):
                x = x.to(torch.float32).div_(255)
            else:
                x = F.normalize(x, step.mean, step.std, inplace=True)
        return x

    def image(self, images: DecodedImages, index: int) -> torch.Tensor:
        x = images.image(index)
        original = (int(images.originals[index][0]), int(images.originals[index][1]))
        for i, step in enumerate(self.per_image):
            if i == self._on_device_from:
                x = x.to(self.device, non_blocking=True)
            x = self._step(step, x, original, images.shorter)
        return x  # a view, maybe strided: stacking the batch copies it once

    def _step(self, step, x: torch.Tensor, original: tuple[int, int], kept: int) -> torch.Tensor:
        if isinstance(step, RandomResizedCropAndInterpolation):
            return _random_resized_crop(step, x, original)
        if isinstance(step, transforms.Resize):
            if isinstance(step.size, int | list | tuple) and _shorter_side(step.size) == kept == min(x.shape[-2:]):
                return x  # done as the images were decoded
            return F.resize(x, step.size, step.interpolation, step.max_size, antialias=True)
        if isinstance(step, RandAugment):
            image = Image.fromarray(np.ascontiguousarray(x.permute(1, 2, 0).numpy()))
            return torch.from_numpy(np.asarray(step(image), dtype=np.uint8).copy()).permute(2, 0, 1)
        if isinstance(step, TO_TENSOR):
            return x.to(torch.float32).div(255)  # as ToTensor divides a PIL image's bytes
        return step(x)


def _shorter_side(size) -> int | None:
    return size if isinstance(size, int) else size[0] if len(size) == 1 else None


def _random_resized_crop(step: RandomResizedCropAndInterpolation, x: torch.Tensor, original: tuple[int, int]):
    """timm's crop: the box drawn for the file's size (the same draws), scaled to the kept pixels."""
    height, width = original
    top, left, box_h, box_w = step.get_params(torch.empty(()).expand(3, height, width), step.scale, step.ratio)
    interpolation = step.interpolation
    if isinstance(interpolation, list | tuple):
        interpolation = random.choice(interpolation)
    kept_h, kept_w = x.shape[-2:]
    sy, sx = kept_h / height, kept_w / width
    top, left = min(round(top * sy), kept_h - 1), min(round(left * sx), kept_w - 1)
    box_h, box_w = max(1, min(round(box_h * sy), kept_h - top)), max(1, min(round(box_w * sx), kept_w - left))
    if x.device.type == "cpu" and x.dtype == torch.uint8:  # Pillow's resampling, as before, and without casts
        image = Image.fromarray(np.ascontiguousarray(x.permute(1, 2, 0).numpy()))
        crop = F.resized_crop(image, top, left, box_h, box_w, list(step.size), interpolation)
        return torch.from_numpy(np.array(crop, dtype=np.uint8)).permute(2, 0, 1)
    return F.resized_crop(x, top, left, box_h, box_w, list(step.size), interpolation, antialias=True)


class DecodedBatches:
    """(images, labels) batches of a decoded split, in the order the image loader gives them (the same
    sampler, drawing from the same seeded generator)."""

    def __init__(self, split: ImageSplit, transform: TensorTransform, *, batch_size: int, shuffle_seed: int | None):
        self.split, self.transform, self.batch_size, self.shuffle_seed = split, transform, batch_size, shuffle_seed
        self.labels = torch.tensor(np.asarray(split.labels), dtype=torch.int64)  # a copy: the split's is read only

    def __len__(self) -> int:
        return -(-len(self.split) // self.batch_size)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.shuffle_seed) if self.shuffle_seed is not None else None
        order = DataLoader(range(len(self.split)), self.batch_size, shuffle=generator is not None, generator=generator)
        for index in order:
            yield self.transform.batch(self.split.decoded, index.tolist()), self.labels[index]
