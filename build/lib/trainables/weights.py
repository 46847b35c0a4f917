"""Pretrained source weights for transfer: timm's hub weights, or a local checkpoint file.

Both paths build the model with `timm.create_model(..., pretrained=True)`, so timm's own per-model
checkpoint filtering and adaptation apply, and return its state dict (the source's head included).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pickle
from collections.abc import Iterator
from pathlib import Path

import timm
import torch
from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import LocalEntryNotFoundError
from timm.models import get_pretrained_cfg

from trainables.paths import PathProblem, checked_path
from trainables.weight_files import (
    _VALID_FORMS,
    WeightsError,
    parse_source,
    weights_file_problem,
)

HUB_TIMEOUT_S = 10


def load_source_state(backbone: str, source: str) -> dict[str, torch.Tensor]:
    """Pretrained weights of `backbone` as a state dict, from `source`.

    `"hub"`: timm's default pretrained weights via the Hugging Face hub; honours the local HF cache and
    HF_HUB_OFFLINE=1, and fails fast (short timeouts, no hang) when they are not cached and the hub is
    unreachable. `"file:<path>"`: a local .safetensors or PyTorch (.pth/.pt/.bin) checkpoint, the
    latter read only with `torch.load(weights_only=True)`. Anything else, or unusable weights, raises
    WeightsError.
    """
    if not timm.is_model(backbone):
        raise WeightsError(f"{backbone}: not a timm model name (weights source {source!r})")
    try:
        kind, path = parse_source(source)
    except WeightsError as exc:
        raise WeightsError(f"{backbone}: {exc}") from None
    if kind == "hub":
        return _from_hub(backbone)
    if kind == "file":
        return _from_file(backbone, path)
    raise WeightsError(f"{backbone}: weights source {source!r} holds no weights to load; use {_VALID_FORMS}")


def _from_hub(backbone: str) -> dict[str, torch.Tensor]:
    cfg = get_pretrained_cfg(backbone)
    where = (cfg.hf_hub_id or cfg.url) if cfg else None
    try:
        with _short_hub_timeouts():
            model = timm.create_model(backbone, pretrained=True)
    except LocalEntryNotFoundError as e:
        # huggingface_hub raises this both offline and when the hub cannot be reached, if nothing is cached.
        offline = " (HF_HUB_OFFLINE=1)" if hf_constants.HF_HUB_OFFLINE else ""
        raise WeightsError(
            f"{backbone}: pretrained weights ({where}) are not in the local Hugging Face cache "
            f"({hf_constants.HF_HUB_CACHE}) and the hub is unreachable{offline}; "
            "download them once with network access or use file:<path>"
        ) from e
    except (OSError, RuntimeError, ValueError) as e:
        raise WeightsError(f"{backbone}: cannot load pretrained weights from the hub ({where}): {_one_line(e)}") from e
    return model.state_dict()


@contextlib.contextmanager
def _short_hub_timeouts() -> Iterator[None]:
    """Cap huggingface_hub's timeouts for this call unless the user set them (it reads the env at import)."""
    saved = {}
    for name in ("HF_HUB_ETAG_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT"):
        if name not in os.environ and hasattr(hf_constants, name):
            saved[name] = getattr(hf_constants, name)
            setattr(hf_constants, name, min(saved[name], HUB_TIMEOUT_S))
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(hf_constants, name, value)


def _from_file(backbone: str, raw_path: str) -> dict[str, torch.Tensor]:
    try:
        path = checked_path(raw_path)
    except PathProblem as exc:
        raise WeightsError(f"{backbone}: the weights path {exc}") from None
    state = _read_checkpoint(backbone, path)
    # Size the head like the file's so timm loads strictly (a fine-tuned head must not mask key mismatches).
    num_classes = _head_classes(backbone, state)
    overlay: dict = {"state_dict": state}
    kwargs = {}
    if num_classes is not None:
        overlay["num_classes"] = kwargs["num_classes"] = num_classes
    try:
        # timm's `state_dict` override runs the same filter / input-conv / classifier steps as `file=`,
        # without handing the path to timm's own reader (whose torch.load defaults vary across versions).
        model = timm.create_model(backbone, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
    except Exception as e:  # any failure here means the tensors do not fit this architecture
        raise WeightsError(
            f"{backbone}: weights in {path} do not match the {backbone} architecture (keys/shapes differ): "
            f"{_one_line(e)}"
        ) from e
    return model.state_dict()


def _read_checkpoint(backbone: str, path: Path) -> dict[str, torch.Tensor]:
    """Tensors from a .safetensors file or a weights-only torch pickle, unwrapped like timm's load_state_dict."""
    problem = weights_file_problem(path)
    if problem:
        raise WeightsError(f"{backbone}: {problem}")
    try:
        # timm's reader: safetensors, or torch.load(weights_only=True), never other pickles; EMA weights
        # first, DDP and torch.compile prefixes stripped. argparse.Namespace is allowed as timm does: its
        # training checkpoints keep the run's args next to the weights.
        with _allow_namespace():
            state = timm.models.load_state_dict(str(path), weights_only=True)
    except Exception as e:
        raise WeightsError(f"{backbone}: {path} is not a valid checkpoint: {_read_failure(path, e)}") from e
    if not isinstance(state, dict) or not state:
        raise WeightsError(f"{backbone}: {path} holds no state dict (got {type(state).__name__})")
    stray = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if stray:
        raise WeightsError(f"{backbone}: {path} is not a plain state dict (non-tensor entries, e.g. {stray[0]!r})")
    return state


def _allow_namespace() -> contextlib.AbstractContextManager:
    safe_globals = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
    return safe_globals([argparse.Namespace]) if safe_globals else contextlib.nullcontext()


def _head_classes(backbone: str, state: dict[str, torch.Tensor]) -> int | None:
    """Classes of the file's classifier (0 if it has none); None if timm's config names no classifier."""
    cfg = get_pretrained_cfg(backbone)
    classifier = cfg.classifier if cfg else None
    if not classifier:
        return None
    first = classifier if isinstance(classifier, str) else classifier[0]
    weight = state.get(f"{first}.weight")
    return 0 if weight is None else int(weight.shape[0])


def _read_failure(path: Path, error: Exception) -> str:
    if isinstance(error, pickle.UnpicklingError):
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        except Exception:
            unsafe = []
        if unsafe:
            return f"it pickles objects other than tensors ({', '.join(unsafe)}), refused by weights_only loading"
        return "not a weights-only PyTorch checkpoint (unpickling failed)"
    return _one_line(error) or f"{type(error).__name__} (empty or truncated file?)"


def _one_line(error: BaseException, limit: int = 300) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
