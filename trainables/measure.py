"""What a trial measures about its model besides accuracy: drift, cost and latency."""

from __future__ import annotations

import logging

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from trainables.models import LayerGroups


def group_label(index: int, keys: tuple[str, ...]) -> str:
    """A readable name for a layer group: its index and the module path it starts with."""
    module = ".".join(keys[0].split(".")[:2]).removesuffix(".weight").removesuffix(".bias")
    return f"{index:02d}.{module}"


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def weight_drift(model: nn.Module, start: dict[str, torch.Tensor], groups: LayerGroups) -> dict[str, float]:
    """Relative L2 change of each group's parameters since `start`: ||w - w0|| / ||w0||.

    For transferred groups `start` is the pretrained weights, so this says which layers
    fine-tuning actually moved."""
    current = dict(model.named_parameters())
    out = {}
    for i, keys in enumerate((*groups.body, groups.head)):
        keys = [k for k in keys if k in current]
        if not keys:
            continue
        diff = sum(float((current[k].detach() - start[k]).pow(2).sum()) for k in keys) ** 0.5
        norm = sum(float(start[k].pow(2).sum()) for k in keys) ** 0.5
        name = "head" if i == len(groups.body) else group_label(i, tuple(keys))
        out[f"drift/{name}"] = diff / max(norm, 1e-12)
    return out


@torch.no_grad()
def multiply_accumulates(model: nn.Module, input_size: tuple[int, int, int], device: torch.device) -> int:
    """MACs of one forward pass on one image (FLOPs counted by PyTorch, halved)."""
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.zeros(1, *input_size, device=device))
    model.train(was_training)
    return counter.get_total_flops() // 2


# Latency: enough timed runs for a stable median, and a bound on the time spent measuring.
LATENCY_MIN_RUNS = 30
LATENCY_MAX_S = 3.0


@torch.no_grad()
def latency_ms_per_image(
    model: nn.Module, input_size: tuple[int, int, int], device: torch.device, min_run_time_s: float = 0.1
) -> float:
    """Median single-image inference latency on the trial's device (torch.utils.benchmark, which also
    synchronises CUDA): a few warm-up runs, discarded (lazy initialisation, caches, cuDNN's algorithm
    search), then blocks of runs for at least `min_run_time_s`, long enough for about
    `LATENCY_MIN_RUNS` runs (at most `LATENCY_MAX_S`), and the median time per run over the blocks."""
    was_training = model.training
    model.eval()
    x = torch.zeros(1, *input_size, device=device)
    # torch.utils.benchmark imports cpp_extension, which warns about CUDA_HOME on machines without CUDA.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from torch.utils import benchmark

    timer = benchmark.Timer(stmt="model(x)", globals={"model": model, "x": x}, num_threads=torch.get_num_threads())
    timer.timeit(number=3)  # warm-up
    once = timer.timeit(number=1).median
    run_time = min(max(min_run_time_s, LATENCY_MIN_RUNS * once), LATENCY_MAX_S)
    median_s = timer.blocked_autorange(min_run_time=run_time).median
    model.train(was_training)
    return 1000.0 * median_s
