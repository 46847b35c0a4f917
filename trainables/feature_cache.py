"""Frozen-feature cache: run the frozen prefix of a model once, then train only what follows it.

While the first layer groups are frozen (the `frozen` schedule, the probe phase of `lp_ft`) and
the inputs are deterministic (no random augmentation, mixup or stochastic depth), the prefix maps
each image to the same features in every epoch, and in every trial that shares the backbone, the
prefix's weights, the data and the preprocessing. So the model is split at a layer-group boundary
into prefix(x) -> features and suffix(features) -> logits, the split is checked against the whole
model on real images, and those epochs train and evaluate the suffix on features computed once.
A model that cannot be split, or whose split fails the check, trains on images as before: the
cache may cost speed, never correctness.

Trials share features through Ray's object store: a small named actor per driver maps a key to an
object it owns, so the features outlive the trial that computed them and later trials with the
same key skip the prefix entirely. The object store rather than files under `storage`, because
the features are derived data of one sweep: trials on a node map them without a copy, other nodes
fetch them on demand (with S3 storage every trial would download them), and nothing is left
behind to go stale. Outside Ray the cache lasts one trial.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import ray
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, TensorDataset

from trainables.data import ImageSplit, TaskData, fingerprint
from trainables.loop import autocast, to_device
from trainables.models import LayerGroups
from trainables.transforms import eval_transform, loader

log = logging.getLogger(__name__)

SCHEDULES = ("frozen", "lp_ft")  # those that keep a frozen prefix for more than one epoch
EVAL_BATCH = 256
REGISTRY = "feature-cache"
NAMESPACE = "orchestrator"  # a named namespace: a detached actor in a driver's anonymous one is unreachable


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
        self._registry = None  # this driver's shared registry, looked up at the first cached epoch

    def epoch(self, num_frozen: int) -> CachedEpoch | None:
        """Cached features while the first `num_frozen` body groups are frozen; None: train on images."""
        if not self.enabled or num_frozen == 0:
            self._epochs.clear()  # e.g. lp_ft after its probe: the features are no longer needed
            return None
        if num_frozen not in self._epochs:
            with _own_rng(self.device):  # the trial's random stream (dropout masks) must not notice the cache
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
        self._registry = self._registry or _registry()  # not before: most trials never cache
        registry = self._registry
        if registry is not None:
            found = ray.get(registry.lookup.remote(key))
            if found is not None:
                return _shared_tensor(ray.get(found[0]))
        features = self._compute(split, images)
        if registry is not None:
            ray.get(registry.store.remote(key, features.numpy()))
        return features

    @torch.no_grad()
    def _compute(self, split: Split, images: ImageSplit) -> torch.Tensor:
        parts = []
        data = loader(images, self.transform, batch_size=EVAL_BATCH, workers=self.workers)
        with _eval_mode(self.model), autocast(self.device, self.precision):
            for x, _ in data:
                parts.append(split.prefix(to_device(x, self.device, self.channels_last)).float().cpu())
        return torch.cat(parts)


class Suffix(nn.Module):
    """The model after the cut. `model` is registered, so train() and eval() reach all of it."""

    def __init__(self, model: nn.Module, steps: list[nn.Module], head: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.model = model
        self._steps = steps  # submodules of `model` that forward_features runs after the cut, in order
        self._head = head

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        for step in self._steps:
            features = step(features)
        return self._head(features)


class _Reached(Exception):
    """Stops forward_features at the cut, carrying the input of the first module after it."""

    def __init__(self, value: torch.Tensor):
        super().__init__()
        self.value = value


class Split:
    """model(x) == suffix(prefix(x)). The prefix is the model's own forward_features, stopped where
    the suffix starts (`cut` indexes `chain`); `cut=None` cuts just before the classifier."""

    def __init__(self, model: nn.Module, chain: list[tuple[str, nn.Module]], cut: int | None):
        self.model, self.chain, self.cut = model, chain, cut
        if cut is None:  # the prefix ends at the pre-logits; the classifier's dropout stays after it
            classifier, dropout = model.get_classifier(), head_dropout(model)
            self.suffix = Suffix(model, [], lambda f: classifier(dropout(f)))
        else:
            self.suffix = Suffix(model, [module for _, module in chain[cut:]], model.forward_head)

    def prefix(self, x: torch.Tensor) -> torch.Tensor:
        """The features of `x`; in eval mode (in training mode the pre-logits would include dropout)."""
        if self.cut is None:
            return self.model.forward_head(self.model.forward_features(x), pre_logits=True)
        if self.cut == len(self.chain):
            return self.model.forward_features(x)

        def stop(module: nn.Module, args: tuple) -> None:
            if len(args) != 1:
                raise ValueError(f"{self.chain[self.cut][0]} takes {len(args)} inputs, not one tensor")
            raise _Reached(args[0])

        handle = self.chain[self.cut][1].register_forward_pre_hook(stop)
        try:
            self.model.forward_features(x)
        except _Reached as reached:
            return reached.value
        finally:
            handle.remove()
        raise ValueError(f"forward_features never reached {self.chain[self.cut][0]}")


def split_model(model: nn.Module, groups: LayerGroups, num_frozen: int, sample: torch.Tensor) -> Split | None:
    """The deepest split whose prefix holds only the first `num_frozen` body groups, verified on
    `sample` (a few real images); None if there is none. Call with the model in its training mode."""
    if num_frozen == 0:
        return None
    if num_frozen >= len(groups.body):
        split = Split(model, [], cut=None)
    else:
        frozen = {key for group in groups.body[:num_frozen] for key in group}
        keys = list(model.state_dict())
        with _eval_mode(model):
            chain = feature_chain(model, sample)
        cut = 0
        while cut < len(chain) and all(k in frozen for k in keys if k.startswith(chain[cut][0] + ".")):
            cut += 1
        if cut == 0:
            return None
        split = Split(model, chain, cut)
    return split if verify(model, split, sample) else None


def feature_chain(model: nn.Module, sample: torch.Tensor) -> list[tuple[str, nn.Module]]:
    """The model's children in the order forward_features calls them, with sequential containers
    (`layers`, `blocks`, `stages`...) opened up to their blocks, so a cut can fall between any two."""
    called: list[str] = []
    handles = [
        child.register_forward_pre_hook(lambda *_, name=name: called.append(name))
        for name, child in model.named_children()
    ]
    try:
        with torch.no_grad():
            model.forward_features(sample)
    finally:
        for handle in handles:
            handle.remove()
    return [step for name in dict.fromkeys(called) for step in _opened(name, model.get_submodule(name))]


def _opened(name: str, module: nn.Module) -> list[tuple[str, nn.Module]]:
    if type(module).forward is nn.Sequential.forward:
        return [step for child, sub in module.named_children() for step in _opened(f"{name}.{child}", sub)]
    children = dict(module.named_children())
    if list(children) == ["downsample", "blocks"]:  # timm's stages (ConvNeXt...): downsample, then blocks
        return _opened(f"{name}.downsample", children["downsample"]) + _opened(f"{name}.blocks", children["blocks"])
    return [(name, module)]


def head_dropout(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The dropout timm applies to the pre-logits before the classifier (its `drop_rate`)."""
    for path in ("head_drop", "head.drop"):
        with contextlib.suppress(AttributeError):
            module = model.get_submodule(path)
            if isinstance(module, nn.Dropout):
                return module
    rate = float(getattr(model, "drop_rate", 0.0) or 0.0)
    return lambda f: F.dropout(f, p=rate, training=model.training) if rate else f


def verify(model: nn.Module, split: Split, sample: torch.Tensor) -> bool:
    """suffix(prefix(x)) == model(x) in eval mode, and in training mode with the same random draws
    (so the prefix is deterministic and the dropout after it lines up), and no trainable
    parameter feeds the prefix. Buffers and the random stream are left as they were."""
    device = sample.device
    with _eval_mode(model):
        with torch.enable_grad():
            features = split.prefix(sample)
        if features.requires_grad:
            return False
        with torch.no_grad():
            if not _close(split.suffix(features), model(sample)):
                return False
    with torch.no_grad(), _kept_buffers(model), _own_rng(device):
        torch.manual_seed(0)
        expected = model(sample)
        torch.manual_seed(0)
        return _close(split.suffix(features), expected)


def state_digest(model: nn.Module, keys: list[str]) -> str:
    """A content hash of some of the model's tensors (the prefix's weights)."""
    state, digest = model.state_dict(), hashlib.sha256()
    for key in sorted(keys):
        tensor = state[key].detach().cpu().contiguous().reshape(-1)
        digest.update(f"{key}:{tensor.dtype}:{tuple(state[key].shape)}".encode())
        digest.update(tensor.view(torch.uint8).numpy())
    return digest.hexdigest()


def _key(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def _labels(split: ImageSplit) -> torch.Tensor:
    return torch.tensor(np.asarray(split.labels), dtype=torch.int64)


def _shared_tensor(array: np.ndarray) -> torch.Tensor:
    with warnings.catch_warnings():  # read-only shared memory; cached features are only ever read
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array)


def _close(got: torch.Tensor, expected: torch.Tensor) -> bool:
    """Equal up to float rounding; a wrong split is off by the size of the logits themselves."""
    if got.shape != expected.shape:
        return False
    scale = max(1.0, float(expected.abs().max()))
    return float((got.float() - expected.float()).abs().max()) <= 1e-3 * scale


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


@contextlib.contextmanager
def _kept_buffers(model: nn.Module) -> Iterator[None]:
    saved = {name: buffer.clone() for name, buffer in model.named_buffers()}
    try:
        yield
    finally:
        for name, buffer in model.named_buffers():
            buffer.copy_(saved[name])


def _own_rng(device: torch.device):
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    return torch.random.fork_rng(devices=cuda)


@ray.remote(num_cpus=0)
class FeatureRegistry:
    """Per driver: cache key -> features in the object store. The actor owns the objects, so they
    outlive the trial that computed them."""

    def __init__(self):
        self._refs: dict[str, ray.ObjectRef] = {}
        self._hits = 0

    def lookup(self, key: str) -> list[ray.ObjectRef] | None:
        ref = self._refs.get(key)
        if ref is None:
            return None
        self._hits += 1
        return [ref]  # in a list, so Ray passes the reference rather than the features

    def store(self, key: str, features: np.ndarray) -> None:
        if key not in self._refs:  # two trials may race to compute the same features; keep the first
            self._refs[key] = ray.put(features)

    def stats(self) -> dict[str, int]:
        return {"entries": len(self._refs), "hits": self._hits}


def _registry_name() -> tuple[str, str]:
    """One registry per driver: job ids are unique within a Ray cluster, and trials share their driver's."""
    return f"{REGISTRY}-{ray.get_runtime_context().get_job_id()}", NAMESPACE


def _registry():
    """This driver's registry, created by the first trial that needs it; None outside Ray."""
    if not ray.is_initialized():
        return None
    name, namespace = _registry_name()
    # It must outlive the trial that creates it: detached, and outside the trial's placement group
    # (which Tune removes, with everything in it, when the trial ends). release_shared_features ends it.
    return FeatureRegistry.options(
        name=name, namespace=namespace, lifetime="detached", get_if_exists=True, scheduling_strategy="DEFAULT"
    ).remote()


def shared_stats() -> dict[str, int] | None:
    """Entries and hits of this driver's registry; None if no trial has created it."""
    if not ray.is_initialized():
        return None
    name, namespace = _registry_name()
    try:
        return ray.get(ray.get_actor(name, namespace=namespace).stats.remote())
    except ValueError:
        return None


def release_shared_features() -> None:
    """Free this driver's shared features (when its sweep is over)."""
    if not ray.is_initialized():
        return
    name, namespace = _registry_name()
    with contextlib.suppress(ValueError):
        ray.kill(ray.get_actor(name, namespace=namespace))
