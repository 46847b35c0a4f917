"""When a trial's epochs can train on cached features, and building those features once."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass

import numpy as np
import ray
import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, TensorDataset

from trainables.data import ImageSplit, TaskData, fingerprint
from trainables.feature_cache.split import Split, eval_mode, own_rng, split_model
from trainables.feature_cache.store import shared_registry, shared_tensor
from trainables.loop import autocast, to_device
from trainables.models import LayerGroups, state_digest
from trainables.transforms import eval_transform, loader

log = logging.getLogger(__name__)

SCHEDULES = ("frozen", "lp_ft")  # those that keep a frozen prefix for more than one epoch
EVAL_BATCH = 256


def applies(cfg: dict) -> bool:
    """Whether a trial asks for the cache and feeds its frozen prefix the same inputs every epoch."""
    return (
        cfg["feature_cache"]
        and cfg["unfreeze"] in SCHEDULES
        and cfg["augment"] == "none"
        and cfg["hflip"] == 0
        and cfg["mixup"] == 0
        and cfg["cutmix"] == 0
        and cfg["drop_path"] == 0  # stochastic depth would drop frozen blocks at random too
    )


@dataclass(frozen=True)
class CachedEpoch:
    """What an epoch trains and evaluates instead of the model on images."""

    suffix: nn.Module
    train_set: TensorDataset
    val_set: TensorDataset

    def train_batches(self, *, batch_size: int, shuffle_seed: int) -> DataLoader:
        return _tensor_batches(self.train_set, batch_size, shuffle_seed)

    def val_batches(self) -> DataLoader:
        return _tensor_batches(self.val_set, EVAL_BATCH)


def _tensor_batches(dataset: TensorDataset, batch_size: int, shuffle_seed: int | None = None) -> DataLoader:
    """The image loader's sampler and seed, so the same batches in the same order; but each batch is
    one indexing of the feature tensors (torch's batched loading), not a stack of single rows."""
    generator = torch.Generator().manual_seed(shuffle_seed) if shuffle_seed is not None else None
    order = RandomSampler(dataset, generator=generator) if generator is not None else SequentialSampler(dataset)
    return DataLoader(
        dataset,
        sampler=BatchSampler(order, batch_size, drop_last=False),
        batch_size=None,
        generator=generator,  # the loader draws from it before the sampler does, as the image loader's
        pin_memory=torch.cuda.is_available(),
    )


class FeatureCache:
    """One trial's cache. Call `epoch` after the Freezer has set up the epoch (frozen groups, train mode)."""

    def __init__(
        self,
        model: nn.Module,
        groups: LayerGroups,
        task: TaskData,
        data_cfg: dict,
        cfg: dict,
        *,
        device: torch.device,
        workers: int = 0,
    ):
        self.model, self.groups, self.task, self.data_cfg = model, groups, task, data_cfg
        self.enabled = applies(cfg)
        self.backbone, self.precision, self.channels_last = cfg["backbone"], cfg["precision"], cfg["channels_last"]
        self.device, self.workers = device, workers
        self.transform = eval_transform(data_cfg)
        self._epochs: dict[int, CachedEpoch | None] = {}  # by number of frozen groups
        self.shared_registry = None  # this driver's shared registry, looked up at the first cached epoch

    def epoch(self, num_frozen: int) -> CachedEpoch | None:
        """Cached features while the first `num_frozen` body groups are frozen; None: train on images."""
        if not self.enabled or num_frozen == 0:
            self._epochs.clear()  # e.g. lp_ft after its probe: the features are no longer needed
            return None
        if num_frozen not in self._epochs:
            with own_rng(self.device):  # the trial's random stream (dropout masks) must not notice the cache
                self._epochs[num_frozen] = self._build(num_frozen)
        return self._epochs[num_frozen]

    def _build(self, num_frozen: int) -> CachedEpoch | None:
        sample = next(iter(loader(self.task.train, self.transform, batch_size=8, pin_memory=False)))[0]
        sample = to_device(sample, self.device, self.channels_last)
        try:
            split = split_model(self.model, self.groups, num_frozen, sample)
        except Exception as exc:  # any failure to split means: train on images
            log.warning("feature cache off for %s: splitting failed (%s)", self.backbone, exc)
            return None
        if split is None:
            log.warning("feature cache off for %s: no verified split after %d frozen groups", self.backbone, num_frozen)
            return None
        identity = {
            "backbone": self.backbone,
            "frozen_groups": num_frozen,
            "prefix_weights": state_digest(self.model, [k for g in self.groups.body[:num_frozen] for k in g]),
            "preprocessing": self.data_cfg,
            "numerics": self.precision if self.device.type == "cuda" else "fp32",
        }
        train, val = self.task.train, self.task.val
        return CachedEpoch(
            suffix=split.suffix,
            train_set=TensorDataset(self._features(split, {**identity, "split": "train"}, train), _labels(train)),
            val_set=TensorDataset(self._features(split, {**identity, "split": "val"}, val), _labels(val)),
        )

    def _features(self, split: Split, identity: dict, images: ImageSplit) -> torch.Tensor:
        key = _key({**identity, "data": fingerprint(images)})
        self.shared_registry = self.shared_registry or shared_registry()  # not before: most trials never cache
        registry = self.shared_registry
        if registry is not None:
            found = ray.get(registry.lookup.remote(key))
            if found is not None:
                return shared_tensor(ray.get(found[0]))
        features = self._compute(split, images)
        if registry is not None:
            ray.get(registry.store.remote(key, features.numpy()))
        return features

    @torch.no_grad()
    def _compute(self, split: Split, images: ImageSplit) -> torch.Tensor:
        parts = []
        data = loader(images, self.transform, batch_size=EVAL_BATCH, workers=self.workers)
        with eval_mode(self.model), autocast(self.device, self.precision):
            for x, _ in data:
                parts.append(split.prefix(to_device(x, self.device, self.channels_last)).float().cpu())
        return torch.cat(parts)


def _key(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def _labels(split: ImageSplit) -> torch.Tensor:
    return torch.tensor(np.asarray(split.labels), dtype=torch.int64)
