"""A CUDA out-of-memory error, re-raised as a message that says what did not fit and what to change."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


class GpuOutOfMemory(RuntimeError):
    pass


@contextlib.contextmanager
def explain_out_of_memory(backbone: str, batch_size: int, device: torch.device) -> Iterator[None]:
    try:
        yield
    except torch.cuda.OutOfMemoryError as exc:
        raise GpuOutOfMemory(
            f"GPU out of memory: {backbone} at batch_size {batch_size} does not fit in {_gpu(device)}. "
            "Lower batch_size, keep precision: bf16, or give each trial a larger share of a GPU "
            f"(resources.gpu). CUDA said: {str(exc).splitlines()[0] if str(exc) else 'out of memory'}"
        ) from None


def _gpu(device: torch.device) -> str:
    if device.type != "cuda" or not torch.cuda.is_available():
        return "the GPU"
    props = torch.cuda.get_device_properties(device)
    return f"{props.name} ({props.total_memory / 2**30:.0f} GiB, shared with the other trials on it)"
