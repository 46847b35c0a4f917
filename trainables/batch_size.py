"""The largest training batch that fits a trial's share of its GPU, found once per sweep.

A spec's `batch_size` is an upper bound: on a GPU, the first trial of a backbone at an input
size tries one training step (forward, backward and an AdamW step, the trial's precision and
memory format, every layer trainable: the most a schedule ever trains) at that batch size, then
halves the interval between what fits and what does not until it has the largest batch that
fits. The probes run on a copy of the model, within the trial's share of the GPU less a margin
for what training allocates besides (the evaluation batches, fragmentation). The answer is kept in
the driver's shared registry (`trainables.feature_cache.store`), so the other trials of the sweep
with that backbone and size skip the search; a resuming trial keeps the batch size its history
says it trained with. On the CPU nothing is searched: the batch size is the spec's.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable

import ray
import torch
import torch.nn.functional as F
from torch import nn

from trainables.feature_cache.store import shared_registry
from trainables.gpu_memory import GpuOutOfMemory
from trainables.loop import autocast

MARGIN = 0.9  # of the trial's share of the GPU: what the probes may use


def largest_batch(fits: Callable[[int], bool], upper: int) -> int:
    """The largest batch size in 1..`upper` for which `fits` is true, assuming that a batch fits
    whenever a larger one does: `upper` itself if it fits, else a bisection (log2(upper) probes)."""
    if fits(upper):
        return upper
    fitting, failing = 0, upper
    while failing - fitting > 1:
        middle = (fitting + failing) // 2
        if fits(middle):
            fitting = middle
        else:
            failing = middle
    if fitting == 0:
        raise GpuOutOfMemory(f"GPU out of memory: not even a batch of 1 fits in the trial's share (batch_size {upper})")
    return fitting


def training_step_fits(model: nn.Module, input_size: tuple[int, ...], cfg: dict, device: torch.device):
    """A probe: does one training step of a copy of `model` at this batch size fit in memory?"""

    def fits(batch: int) -> bool:
        probe = copy.deepcopy(model).train()
        try:
            for p in probe.parameters():
                p.requires_grad_(True)
            optimizer = torch.optim.AdamW(probe.parameters())
            images = torch.randn(batch, *input_size, device=device)
            if cfg["channels_last"]:
                images = images.contiguous(memory_format=torch.channels_last)
            with autocast(device, cfg["precision"]):
                logits = probe(images).float()
            F.cross_entropy(logits, torch.zeros(batch, dtype=torch.long, device=device)).backward()
            optimizer.step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            return True
        except torch.cuda.OutOfMemoryError:
            return False
        finally:
            del probe
            if device.type == "cuda":
                torch.cuda.empty_cache()

    return fits


def fit_batch_size(
    model: nn.Module, input_size: tuple[int, ...], cfg: dict, device: torch.device, gpu_share: float, fits=None
) -> int:
    """The batch size this trial trains with (see the module docstring). `fits` replaces the probe
    (tests inject an out-of-memory condition through it)."""
    upper = cfg["batch_size"]
    if device.type != "cuda" and fits is None:
        return upper
    key = _key(cfg, input_size, device, gpu_share)
    registry = shared_registry()
    if registry is not None:
        found = ray.get(registry.lookup.remote(key))
        if found is not None:
            return int(ray.get(found[0]))
    fits = fits or training_step_fits(model, input_size, cfg, device)
    limit_memory(device, (gpu_share or 1.0) * MARGIN)
    try:
        batch = largest_batch(fits, upper)
    finally:
        limit_memory(device, gpu_share)
    if registry is not None:
        ray.get(registry.store.remote(key, batch))
    return batch


def limit_memory(device: torch.device, gpu_share: float) -> None:
    """Keep this process within its share of the GPU (`resources.gpu`; none: all of it), so trials
    packed on one GPU fail alone, with a clear message, rather than each other."""
    if device.type == "cuda":
        torch.cuda.set_per_process_memory_fraction(gpu_share if 0 < gpu_share < 1 else 1.0, device)


def _key(cfg: dict, input_size: tuple[int, ...], device: torch.device, gpu_share: float) -> str:
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    what = [
        cfg["backbone"],
        list(input_size),
        cfg["precision"],
        cfg["channels_last"],
        cfg["batch_size"],
        gpu,
        gpu_share,
    ]
    return "batch-size:" + hashlib.sha256(json.dumps(what).encode()).hexdigest()
