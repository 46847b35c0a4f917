"""Image classification tasks: which images, which labels, which split.

A split holds either pixels in memory (small bundled datasets) or file paths (an image
folder). Either way it yields PIL images, so one transform pipeline (trainables.transforms)
serves both; an image folder decoded once for a sweep (trainables.decoded) is fed from tensors
instead. Tasks are built once on the driver and reach trials through Ray's object store.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from trainables.images import ImageProblem, first_bad_image, load_rgb
from trainables.paths import PathProblem, checked_path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class DataError(ValueError):
    """A problem with the user's data, named precisely (file, class, count)."""


@dataclass(frozen=True)
class DecodedImages:
    """An image folder's images decoded once, packed in one array (see trainables.decoded)."""

    pixels: np.ndarray  # uint8: every image's HWC pixels, one image after another
    offsets: np.ndarray  # int64 [N + 1]: where each image starts in `pixels`
    shapes: np.ndarray  # int64 [N, 2]: (height, width) as kept, the shorter side `shorter`
    originals: np.ndarray  # int64 [N, 2]: (height, width) as the file holds it
    shorter: int
    interpolation: str  # timm's name of the resampling that made them (bilinear, bicubic, ...)

    def __len__(self) -> int:
        return len(self.shapes)

    def image(self, index: int) -> torch.Tensor:
        """The image as a CHW uint8 tensor: a view of the shared pixels (read only)."""
        height, width = (int(v) for v in self.shapes[index])
        pixels = self.pixels[self.offsets[index] : self.offsets[index + 1]].reshape(height, width, 3)
        with warnings.catch_warnings():  # read-only shared memory in a trial; every step reads it only
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(pixels).permute(2, 0, 1)


@dataclass(frozen=True)
class ImageSplit:
    labels: np.ndarray  # int64 [N], indices into TaskData.class_names
    pixels: np.ndarray | None = None  # uint8 [N, H, W] (grayscale) or [N, H, W, 3]
    paths: tuple[str, ...] | None = None
    decoded: DecodedImages | None = None  # the images at `paths`, decoded once (trainables.decoded)

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, index: int) -> Image.Image:
        if self.pixels is not None:
            return Image.fromarray(self.pixels[index]).convert("RGB")
        return open_image(self.paths[index])


@dataclass(frozen=True)
class TaskData:
    train: ImageSplit
    val: ImageSplit
    class_names: tuple[str, ...]
    test: ImageSplit | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def open_image(path: str) -> Image.Image:
    """The image as trials train on it: RGB by the rule in trainables.images, as checked up front."""
    try:
        return load_rgb(path)
    except ImageProblem as exc:
        raise DataError(f"{path}: {exc}") from None


def load_digits_task(
    classes: Sequence[int], *, train_per_class: int | None, val_per_class: int | None, seed: int
) -> TaskData:
    """scikit-learn's handwritten digits (8x8, shipped with the package, no download).

    For each class a seeded permutation puts the first `train_per_class` images in train and
    up to `val_per_class` of the rest in val; `train_per_class=None` trains on every image
    (a source task for pretraining) and leaves val empty.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    rng = np.random.default_rng(seed)
    train, val = [], []
    for cls in classes:
        idx = rng.permutation(np.flatnonzero(digits.target == cls))
        n_train = len(idx) if train_per_class is None else train_per_class
        if n_train >= len(idx) and train_per_class is not None:
            raise DataError(f"digit {cls} has {len(idx)} images; train_per_class={train_per_class} leaves none for val")
        train.append(idx[:n_train])
        val.append(idx[n_train:] if val_per_class is None else idx[n_train : n_train + val_per_class])
    if train_per_class is None:
        val = [np.array([], dtype=np.int64)]

    def split(parts: list[np.ndarray]) -> ImageSplit:
        index = np.concatenate(parts).astype(np.int64)
        label_of = {cls: i for i, cls in enumerate(classes)}
        labels = np.array([label_of[c] for c in digits.target[index]], dtype=np.int64)
        return ImageSplit(labels=labels, pixels=pixels[index])

    return TaskData(train=split(train), val=split(val), class_names=tuple(str(c) for c in classes))


def load_imagefolder_task(
    root: str | os.PathLike,
    *,
    classes: Sequence[str] | None = None,
    val_fraction: float = 0.2,
    train_per_class: int | None = None,
    seed: int = 0,
) -> TaskData:
    """Class-per-folder images. With `train/` and `val/` (and optionally `test/`) subfolders
    those splits are used as they are; otherwise each class folder is split with a seeded
    `val_fraction`. `train_per_class` subsamples training images (few-shot).

    Every image is decoded up front (in parallel; a re-run skips files unchanged since they last
    passed), and links that lead out of `root` are refused: the folder is untrusted input."""
    try:
        root = checked_path(os.fspath(root))
    except PathProblem as exc:
        raise DataError(f"the image folder path {exc}") from None
    folder = _Folder(root)
    if not folder.is_dir(root):
        raise DataError(f"{root}: no such directory")
    if folder.is_dir(root / "train"):
        names = folder.class_names(root / "train", classes)
        if not folder.is_dir(root / "val"):
            raise DataError(f"{root}: has train/ but no val/ folder")
        train = folder.scan(root / "train", names)
        val = folder.scan(root / "val", names)
        test = folder.scan(root / "test", names) if folder.is_dir(root / "test") else None
    else:
        names = folder.class_names(root, classes)
        everything = folder.scan(root, names)
        train, val = _split_fraction(everything, val_fraction, seed)
        test = None
    folder.decode_all()  # fail before any compute is spent, not in epoch 3 of some trial
    if train_per_class is not None:
        train = _subsample(train, train_per_class, names, seed)
    for split_name, split in (("train", train), ("val", val)):
        missing = set(range(len(names))) - set(split.labels.tolist())
        if missing:
            raise DataError(f"{root}: class {names[min(missing)]!r} has no {split_name} images")
    return TaskData(train=train, val=val, class_names=tuple(names), test=test)


# Not torchvision's `make_dataset`: it follows links out of the folder and around loops, and takes any
# extension its loader accepts; an untrusted folder needs every entry checked as it is walked.
class _Folder:
    """An image folder walked as untrusted input: links may point anywhere inside it (they are
    followed), but a link that leads out of it, a link loop, a folder reached twice, or a pipe,
    socket or device is refused. Hidden files and folders are skipped."""

    def __init__(self, root: Path):
        self.root = root
        self.real_root = Path(os.path.realpath(root))
        self.files: list[tuple[str, int, int]] = []  # (absolute path, size, mtime_ns) of every image
        self._seen: set[tuple[int, int]] = set()  # (device, inode) of every folder scanned

    def is_dir(self, path: Path) -> bool:
        return stat.S_ISDIR(self._stat(path).st_mode) if self._exists(path) else False

    def class_names(self, folder: Path, wanted: Sequence[str] | None) -> list[str]:
        found = sorted(entry.name for entry in self._entries(folder) if self.is_dir(Path(entry.path)))
        if wanted is None:
            if len(found) < 2:
                raise DataError(f"{folder}: needs at least two class folders, found {found}")
            return found
        absent = [c for c in wanted if c not in found]
        if absent:
            raise DataError(f"{folder}: class {absent[0]!r} has no folder (found {found})")
        return list(wanted)

    def scan(self, folder: Path, names: list[str]) -> ImageSplit:
        paths, labels = [], []
        for label, name in enumerate(names):
            for path, info in self._images(folder / name):
                if path.suffix.lower() not in IMAGE_SUFFIXES:
                    raise DataError(f"{path}: not an image file (expected one of {', '.join(IMAGE_SUFFIXES)})")
                self.files.append((os.path.abspath(path), info.st_size, info.st_mtime_ns))
                paths.append(str(path))
                labels.append(label)
        return ImageSplit(labels=np.array(labels, dtype=np.int64), paths=tuple(paths))

    def decode_all(self) -> None:
        bad = first_bad_image(self.files, cache_key=str(self.real_root))
        if bad:
            raise DataError(f"{bad[0]}: {bad[1]}")

    def _images(self, folder: Path) -> list[tuple[Path, os.stat_result]]:
        """Every file under `folder`, depth first, sorted by path as pathlib sorts."""
        found, pending = [], [folder]
        while pending:
            current = pending.pop()
            self._enter(current)
            for entry in self._entries(current):
                path = Path(entry.path)
                info = self._stat(path)
                if stat.S_ISDIR(info.st_mode):
                    pending.append(path)
                elif stat.S_ISREG(info.st_mode):
                    found.append((path, info))
                else:
                    raise DataError(f"{path}: not a regular file (a pipe, socket or device); expected an image")
        return sorted(found, key=lambda item: item[0])

    def _enter(self, folder: Path) -> None:
        info = self._stat(folder)
        if (info.st_dev, info.st_ino) in self._seen:
            raise DataError(f"{folder}: this folder is reached twice (through a link); scan each folder once")
        self._seen.add((info.st_dev, info.st_ino))

    def _entries(self, folder: Path) -> list[os.DirEntry]:
        try:
            with os.scandir(folder) as entries:
                return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)
        except OSError as exc:
            raise DataError(f"{folder}: cannot be listed ({exc.strerror or type(exc).__name__})") from None

    def _exists(self, path: Path) -> bool:
        return os.path.lexists(path)

    def _stat(self, path: Path) -> os.stat_result:
        """The file `path` names, after checking that a link there stays inside the folder."""
        try:
            if os.path.islink(path):
                self._check_link(path)
            return path.stat()
        except OSError as exc:
            raise DataError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None

    def _check_link(self, path: Path) -> None:
        try:
            target = Path(os.path.realpath(path, strict=True))
        except OSError as exc:
            loop = exc.errno == errno.ELOOP
            raise DataError(f"{path}: {'a symlink loop' if loop else 'a broken link'}") from None
        if target != self.real_root and not target.is_relative_to(self.real_root):
            raise DataError(
                f"{path}: a link that leads out of the image folder (to {target}); copy the file in instead"
            )


def _split_fraction(split: ImageSplit, val_fraction: float, seed: int) -> tuple[ImageSplit, ImageSplit]:
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in np.unique(split.labels):
        idx = rng.permutation(np.flatnonzero(split.labels == label))
        n_val = max(1, int(round(len(idx) * val_fraction)))
        val += idx[:n_val].tolist()
        train += idx[n_val:].tolist()
    return _take(split, sorted(train)), _take(split, sorted(val))


def _subsample(split: ImageSplit, per_class: int, names: list[str], seed: int) -> ImageSplit:
    rng = np.random.default_rng(seed)
    keep = []
    for label in range(len(names)):
        idx = np.flatnonzero(split.labels == label)
        if len(idx) < per_class:
            raise DataError(f"class {names[label]!r} has {len(idx)} training images, train_per_class={per_class}")
        keep += rng.choice(idx, per_class, replace=False).tolist()
    return _take(split, sorted(keep))


def _take(split: ImageSplit, index: list[int]) -> ImageSplit:
    paths = tuple(split.paths[i] for i in index) if split.paths is not None else None
    pixels = split.pixels[index] if split.pixels is not None else None
    return ImageSplit(labels=split.labels[index], pixels=pixels, paths=paths)


def fingerprint(split: ImageSplit) -> str:
    """The content of an in-memory split; for image files, their paths, sizes and modification times."""
    digest = hashlib.sha256(np.ascontiguousarray(split.labels))
    if split.pixels is not None:
        digest.update(np.ascontiguousarray(split.pixels))  # hashed in place, no copy
    else:
        for path in split.paths:
            stat = os.stat(path)
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()
