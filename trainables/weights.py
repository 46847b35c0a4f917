"""Pretrained source weights for transfer: timm's hub weights, or a local checkpoint file.

Both paths build the model with `timm.create_model(..., pretrained=True)`, so timm's own per-model
checkpoint filtering and adaptation apply, and return its state dict (the source's head included).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
from collections.abc import Iterator
from pathlib import Path

import timm
import torch
from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import LocalEntryNotFoundError
from timm.models import get_pretrained_cfg

from trainables.paths import PathProblem, checked_path, file_kind

FILE_PREFIX = "file:"
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".pth.tar")
WEIGHTS_SUFFIXES = (".safetensors", *TORCH_SUFFIXES)  # the one list: the spec check and the loader share it
HUB_TIMEOUT_S = 10
_VALID_FORMS = "'hub' or 'file:<path>' (.safetensors, .pth, .pth.tar, .pt, .bin)"
SAFETENSORS_MAX_HEADER = 100_000_000  # the safetensors format's own limit on its JSON header
# A PyTorch checkpoint is a zip archive (torch >= 1.6) or, in the legacy format, a pickle.
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")


class WeightsError(ValueError):
    """Source weights cannot be loaded; the message names the backbone and the source."""


SOURCE_FORMS = ("pretrain", "hub", "file:<path>", "none")  # what `weights.source` may say
KINDS = ("pretrain", "hub", "none")  # the forms that are a plain word


def parse_source(source: str) -> tuple[str, str | None]:
    """(kind, path) of a `weights.source`: ('pretrain' | 'hub' | 'none', None) or ('file', path).
    The one reading of the grammar: the spec check, the driver and the trials all use it."""
    if source in KINDS:
        return source, None
    if source.startswith(FILE_PREFIX) and source[len(FILE_PREFIX) :].strip():
        return "file", source[len(FILE_PREFIX) :].strip()
    raise WeightsError(f"unknown weights source {source!r}; expected one of {list(SOURCE_FORMS)}")


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


def has_weights_suffix(name: str) -> bool:
    return name.lower().endswith(WEIGHTS_SUFFIXES)


def weights_file_problem(path: Path, *, look_inside: bool = True) -> str | None:
    """What makes `path` unusable as a weights file, in one sentence naming it, or None. Checks the
    suffix, then (`look_inside`) that it is a non-empty regular file whose header is sound, all
    without unpickling or mapping anything."""
    if not has_weights_suffix(path.name):
        return f"weights file {path} has an unsupported suffix; use {_VALID_FORMS}"
    if not look_inside:
        return None
    try:
        kind = file_kind(path)
    except PathProblem as exc:
        return f"weights file {path} {exc}"
    if kind != "file":
        return {
            "missing": f"weights file {path} does not exist",
            "directory": f"weights file {path} is a directory",
        }.get(kind, f"weights file {path} is not a regular file (a pipe or a device?)")
    try:
        problem = _header_problem(path)
    except OSError as exc:
        problem = f"cannot be read ({exc.strerror or type(exc).__name__})"
    return f"{path} is not a valid checkpoint: {problem}" if problem else None


def _header_problem(path: Path) -> str | None:
    size = path.stat().st_size
    if size == 0:
        return "the file is empty"
    with open(path, "rb") as stream:
        if not path.name.lower().endswith(".safetensors"):
            return None if stream.read(4).startswith(_TORCH_MAGIC) else "neither a zip archive nor a pickle"
        if size < 8:
            return "shorter than a safetensors header"
        length = int.from_bytes(stream.read(8), "little")
        if length > min(SAFETENSORS_MAX_HEADER, size - 8):
            return f"its safetensors header claims {length:,} bytes, but the file holds {size - 8:,} after the length"
        header = stream.read(length)
    try:
        tensors = json.loads(header)
    except ValueError:  # also UnicodeDecodeError
        return "its safetensors header is not JSON"
    if not isinstance(tensors, dict):
        return "its safetensors header is not a JSON object"
    return _tensor_bounds_problem(tensors, size - 8 - length)


def _tensor_bounds_problem(tensors: dict, data_bytes: int) -> str | None:
    for name, entry in tensors.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        valid = isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
        if not valid or not 0 <= offsets[0] <= offsets[1] <= data_bytes:
            return f"tensor {str(name)[:60]!r} lies outside the file's {data_bytes:,} bytes of data"
    return None


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
