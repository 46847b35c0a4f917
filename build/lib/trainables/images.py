"""Untrusted image files to RGB: decoded in full, bounded in size, converted by one rule.

`load_rgb` is what training reads and what the up-front check decodes, so an image that
passed the check is the image a trial trains on. The rule for modes other than RGB:
- 8-bit grayscale, bilevel, palette, CMYK, YCbCr, LAB, HSV: Pillow's conversion to RGB;
- 16-bit grayscale (`I;16`, `I;16B`, ...: 16-bit PNGs and TIFFs) and 32-bit integer (`I`) images
  whose values lie in 0..65535: scaled to 8 bits (v * 255 / 65535), so they keep their contrast
  instead of clipping to white; an `I` image with values outside 0..65535 is refused;
- 32-bit float (`F`): refused, since nothing says whether its values run over 0..1 or 0..255;
- transparency (RGBA, LA, PA, or a palette with a transparent colour): composited onto white, as
  image viewers show it.
Images of more than MAX_IMAGE_PIXELS pixels are refused before their pixels are decoded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from trainables.paths import cache_dir, write_atomically

# Pillow's own decompression-bomb limit (about 0.25 GB of RGB): a 50-megapixel camera photo fits,
# a 20000x20000 PNG of a few KB that would decode to 1.2 GB does not.
MAX_IMAGE_PIXELS = 89_478_485
# Bump when the rule above changes, so that cached verdicts of the old rule are not trusted.
CHECK_VERSION = f"1/{Image.__version__}/{MAX_IMAGE_PIXELS}"
DECODE_BATCH = 1024  # images handed to the decoding threads at a time (bounds the pending futures)
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
_TRANSPARENT = ("RGBA", "LA", "PA", "RGBa")


class ImageProblem(ValueError):
    """Why an image file cannot be trained on, in a few words (the caller names the file)."""


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """The image at `path`, fully decoded, as 8-bit RGB by the rule above; ImageProblem if it cannot be."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise ImageProblem(
                    f"{width}x{height} pixels is more than the limit of {MAX_IMAGE_PIXELS:,} (a decompression bomb?)"
                )
            image.load()  # every pixel decoded: truncated or corrupt data fails here
            return to_rgb(image)
    except ImageProblem:
        raise
    except Image.DecompressionBombError:
        raise ImageProblem(
            f"more pixels than twice the limit of {MAX_IMAGE_PIXELS:,} (a decompression bomb?)"
        ) from None
    except Exception as exc:  # noqa: BLE001 - a decoder fed hostile bytes may raise anything
        reason = " ".join(str(exc).split())[:200] or "no detail"
        raise ImageProblem(f"corrupt or unreadable image ({type(exc).__name__}: {reason})") from None


def to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image.copy()
    if mode in _SIXTEEN_BIT or mode == "I":
        return _scaled_to_8_bits(image)
    if mode == "F":
        raise ImageProblem("32-bit float pixels: their scale (0..1 or 0..255?) is unknown; save it as 8- or 16-bit")
    if mode in _TRANSPARENT or (mode == "P" and "transparency" in image.info):
        return _on_white(image.convert("RGBA"))
    try:
        return image.convert("RGB")
    except ValueError as exc:
        raise ImageProblem(f"mode {mode} cannot be converted to RGB ({exc})") from None


def _scaled_to_8_bits(image: Image.Image) -> Image.Image:
    values = np.asarray(image).astype(np.int64)
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise ImageProblem(
            f"32-bit integer pixels from {values.min()} to {values.max()}, beyond 16 bits; save it as 8- or 16-bit"
        )
    gray = ((values * 255 + 32767) // 65535).astype(np.uint8)
    return Image.fromarray(gray).convert("RGB")


def _on_white(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


@contextlib.contextmanager
def quiet_decoders() -> Iterator[None]:
    """Pillow warns about an image between its pixel limit and twice it, and warns or logs about
    the corrupt files it reads; during the check those would print beside the one line that
    refuses the file. (Not thread-safe, as warnings filters are not: enter it on one thread.)"""
    pil_logger = logging.getLogger("PIL")
    level = pil_logger.level
    pil_logger.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"PIL\.")
            yield
    finally:
        pil_logger.setLevel(level)


def image_problem(path: str) -> str | None:
    try:
        load_rgb(path)
    except ImageProblem as exc:
        return str(exc)
    return None


def first_bad_image(files: list[tuple[str, int, int]], cache_key: str) -> tuple[str, str] | None:
    """Decodes every image of `files` ((path, size, mtime_ns) each), in parallel, and returns the
    first (in order) that cannot be trained on with the reason, or None. Files whose size and
    modification time match a cached pass of the same folder are not decoded again; the cache is
    rewritten only when every file passed."""
    cached = _read_cache(cache_key)
    todo = [path for path, size, mtime in files if cached.get(path) != [size, mtime]]
    workers = max(1, min(32, os.cpu_count() or 1))
    with quiet_decoders(), ThreadPoolExecutor(max_workers=workers) as pool:  # decoders release the GIL
        for start in range(0, len(todo), DECODE_BATCH):
            batch = todo[start : start + DECODE_BATCH]
            for path, problem in zip(batch, pool.map(image_problem, batch), strict=True):
                if problem:
                    return path, problem
    # Keep what other runs of this folder passed (another choice of classes): each entry is
    # trusted only while its file's size and modification time match.
    _write_cache(cache_key, {**cached, **{path: [size, mtime] for path, size, mtime in files}})
    return None


def _cache_file(cache_key: str) -> Path:
    digest = hashlib.sha256(f"{CHECK_VERSION}\0{cache_key}".encode(errors="surrogateescape")).hexdigest()[:24]
    return cache_dir() / "checked-images" / f"{digest}.json"


def _read_cache(cache_key: str) -> dict[str, list[int]]:
    """The files a previous run decoded and passed; empty if the cache is missing, unreadable,
    corrupt, of another rule, or of another folder (it is then simply not used)."""
    try:
        content = json.loads(_cache_file(cache_key).read_bytes())
    except (OSError, ValueError):  # ValueError: not JSON, or not UTF-8
        return {}
    if not isinstance(content, dict) or content.get("version") != CHECK_VERSION or content.get("key") != cache_key:
        return {}
    files = content.get("files")
    if not isinstance(files, dict):
        return {}
    return {path: stamp for path, stamp in files.items() if _is_stamp(stamp)}


def _is_stamp(stamp: object) -> bool:
    return isinstance(stamp, list) and len(stamp) == 2 and all(type(v) is int for v in stamp)


def _write_cache(cache_key: str, files: dict[str, list[int]]) -> None:
    text = json.dumps({"version": CHECK_VERSION, "key": cache_key, "files": files}, ensure_ascii=True)
    write_atomically(_cache_file(cache_key), text)
