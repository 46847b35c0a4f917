"""Weights files and the `weights.source` grammar, checked without torch: a spec can be refused in
well under a second, and nothing in a file is unpickled or mapped to check it."""

from __future__ import annotations

import json
from pathlib import Path

from trainables.paths import PathProblem, file_kind

FILE_PREFIX = "file:"
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".pth.tar")
WEIGHTS_SUFFIXES = (".safetensors", *TORCH_SUFFIXES)  # the one list: the spec check and the loader share it
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
