"""An image folder decoded once per sweep: every image as uint8 pixels at the sweep's input size.

Decoding a photo is most of what feeding it to a small model costs, and a sweep's trials read
the same folder epoch after epoch. So the driver decodes each training and validation image
once, by the same rule the up-front check applies (`trainables.images.load_rgb`), resizes it as
the first step of every trial's preprocessing does (its shorter side to the input size, with the
backbone's interpolation, by the same torchvision call), and keeps the uint8 pixels packed in one
array. That array reaches every trial through Ray's object store, as the task does (a trial on
a node maps the node's one copy), and `trainables.tensor_pipeline` takes each epoch's crops,
flips and the rest from it on tensors.

The images are kept at the largest input size the sweep's backbones take (the spec's
`data.image_size`, else each backbone's pretrained config); a backbone with a smaller input
resizes them again, on tensors. A folder whose pixels would take more than `decoded_share()` of the
object store of the smallest node is not decoded ahead: its trials decode every epoch, as before.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image
from timm.data import resolve_data_config
from timm.data.transforms import str_to_interp_mode
from timm.models import get_pretrained_cfg
from torchvision.transforms import Resize

from trainables.data import DataError, DecodedImages, open_image
from trainables.images import quiet_decoders

# The object store also holds the source weights, shared frozen features and Ray's own traffic;
# half of the smallest node's store leaves them room without spilling to disk. ORCHESTRATOR_DECODED_SHARE
# sets another share (0: never decode ahead).
DECODED_SHARE = 0.5


def decoded_share() -> float:
    """The share of the smallest node's object store that decoded images may take."""
    return float(os.environ.get("ORCHESTRATOR_DECODED_SHARE", DECODED_SHARE))


def sweep_input(backbones: list[str], image_size: int | None) -> tuple[int, str]:
    """(the largest input size of the sweep's backbones, the interpolation of a backbone that takes
    it): the size images are kept at. `image_size` (the spec's) overrides every backbone's size."""
    inputs = []
    for name in backbones:
        config = get_pretrained_cfg(name)
        data = resolve_data_config(pretrained_cfg=config.to_dict() if config else {})
        inputs.append((image_size or int(data["input_size"][-1]), data["interpolation"]))
    size = max(s for s, _ in inputs)
    return size, next(interpolation for s, interpolation in inputs if s == size)


def kept_shape(height: int, width: int, shorter: int) -> tuple[int, int]:
    """torchvision's Resize(shorter) output size for an image of (height, width)."""
    if height <= width:
        return shorter, int(shorter * width / height)
    return int(shorter * height / width), shorter


def decoded_bytes(sizes: list[tuple[int, int]], shorter: int) -> int:
    """What images of these (height, width) take when kept at `shorter`."""
    return sum(3 * h * w for h, w in (kept_shape(height, width, shorter) for height, width in sizes))


def image_sizes(paths: tuple[str, ...]) -> list[tuple[int, int]]:
    """(height, width) of each image, from its header (nothing decoded)."""
    sizes = []
    with quiet_decoders():
        for path in paths:
            try:
                with Image.open(path) as image:
                    sizes.append((image.height, image.width))
            except Exception as exc:  # noqa: BLE001 - a file changed since the check: say which, in one line
                open_image(path)  # raises DataError by the check's rule
                raise DataError(f"{path}: its header cannot be read ({type(exc).__name__})") from None
    return sizes


def decode(paths: tuple[str, ...], shorter: int, interpolation: str, workers: int | None = None) -> DecodedImages:
    """Every image of `paths`, decoded by `load_rgb`'s rule and resized to `shorter` as a trial's
    preprocessing first resizes it, in threads (the decoders release the GIL)."""
    originals = np.array(image_sizes(paths), dtype=np.int64).reshape(-1, 2)
    shapes = np.array([kept_shape(h, w, shorter) for h, w in originals], dtype=np.int64).reshape(-1, 2)
    offsets = np.zeros(len(paths) + 1, dtype=np.int64)
    np.cumsum(3 * shapes[:, 0] * shapes[:, 1], out=offsets[1:])
    pixels = np.empty(int(offsets[-1]), dtype=np.uint8)
    resize = Resize(shorter, interpolation=str_to_interp_mode(interpolation))

    def one(index: int) -> None:
        kept = np.asarray(resize(open_image(paths[index])), dtype=np.uint8)
        if kept.shape != (*shapes[index], 3):  # the header lied about the size
            raise ValueError(f"{paths[index]}: decodes to {kept.shape[:2]}, its header says {tuple(originals[index])}")
        pixels[offsets[index] : offsets[index + 1]] = kept.reshape(-1)

    with quiet_decoders(), ThreadPoolExecutor(max_workers=workers or max(1, min(32, os.cpu_count() or 1))) as pool:
        list(pool.map(one, range(len(paths))))
    return DecodedImages(pixels, offsets, shapes, originals, shorter, interpolation)
