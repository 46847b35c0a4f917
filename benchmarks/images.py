"""Section 8: images decoded once and fed from tensors, against decoding every epoch with PIL.

A folder of generated JPEG photos (`images_count` of about 500x375 px, a quarter of them in
portrait, shapes on gradients with noise: about 40 KB each) is loaded as a sweep loads it (the
up-front check included), then fed for 224 px input (resnet50's preprocessing: bicubic, ImageNet
mean and std) in both ways, epoch by epoch, alternating:
- per epoch, as before: the trial's loader decodes each file with PIL and runs timm's transform;
- decoded once: the folder decoded at 224 px (trainables.decoded), each epoch's crops and flips
  taken on tensors (trainables.tensor_pipeline).
Both run in this process on one thread with no loader workers: images delivered to the model
per CPU-second of that thread (what one core delivers, however busy the machine), for a training
epoch (augment light, hflip 0.5) and a validation pass; the wall-clock rates are in the details.
The one-time decode is timed on one thread too, and given as the number of per-epoch PIL epochs
it costs.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from benchmarks.report import Figure, Section
from trainables.data import load_imagefolder_task
from trainables.decoded import decode
from trainables.models import create_backbone
from trainables.seeds import seed_epoch
from trainables.transforms import data_config, eval_transform, loader, train_transform

CLASSES = 4
SIZE = 224
BATCH = 64


def make_folder(root: Path, count: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(count):
        label = i % CLASSES
        folder = root / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        w, h = (500, 375) if i % 4 else (375, 500)
        tint = np.array([[1.0, 0.7, 0.4], [0.4, 0.7, 1.0], [0.7, 1.0, 0.4], [1.0, 0.4, 0.7]][label])
        ramp = np.linspace(30, 220, w)[None, :, None] * tint
        pixels = np.clip(ramp + rng.normal(0, 18, (h, w, 3)), 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels)
        draw = ImageDraw.Draw(image)
        for _ in range(8):
            x, y, r = int(rng.integers(0, w - 80)), int(rng.integers(0, h - 80)), int(rng.integers(20, 80))
            draw.ellipse([x, y, x + r, y + r], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        image.save(folder / f"{i:05d}.jpg", quality=88)


def epoch_rate(split, transform, *, shuffle_seed: int | None) -> tuple[float, float]:
    """(images per CPU-second, images per wall-second) of one pass over `split`, every batch made as
    the model gets it. Per CPU-second of this thread, which does all the work (one torch thread,
    no loader workers): what one core delivers, whatever else the machine is running."""
    seed_epoch(0, shuffle_seed or 1)
    wall, cpu, seen = time.perf_counter(), time.thread_time(), 0
    for images, labels in loader(split, transform, batch_size=BATCH, shuffle_seed=shuffle_seed):
        seen += len(labels)
        assert images.shape[-1] == SIZE
    return seen / (time.thread_time() - cpu), seen / (time.perf_counter() - wall)


def run(profile) -> Section:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core: what one trial with one CPU has
    saved = os.environ.get("ORCHESTRATOR_CACHE_DIR")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["ORCHESTRATOR_CACHE_DIR"] = str(Path(tmp) / "cache")  # the check's cache stays in here
            return _measure(Path(tmp), profile)
    finally:
        torch.set_num_threads(threads)
        if saved is None:
            os.environ.pop("ORCHESTRATOR_CACHE_DIR", None)
        else:
            os.environ["ORCHESTRATOR_CACHE_DIR"] = saved


def _measure(tmp: Path, profile) -> Section:
    started = time.perf_counter()
    make_folder(tmp / "photos", profile.images_count)
    made_s = time.perf_counter() - started
    files = sorted((tmp / "photos").rglob("*.jpg"))
    mean_kb = sum(f.stat().st_size for f in files) / len(files) / 1024
    started = time.perf_counter()
    task = load_imagefolder_task(tmp / "photos", val_fraction=0.2, seed=0)  # the up-front check, as a sweep runs it
    check_s = time.perf_counter() - started
    cfg = data_config(create_backbone("resnet50", CLASSES), SIZE)
    started = time.process_time()
    decoded = {
        name: dataclasses.replace(split, decoded=decode(split.paths, SIZE, cfg["interpolation"], workers=1))
        for name, split in (("train", task.train), ("val", task.val))
    }
    decode_s = time.process_time() - started  # CPU-seconds: one decoding thread (workers=1)
    kept_mb = sum(split.decoded.pixels.nbytes for split in decoded.values()) / 2**20
    train, val = train_transform(cfg, "light", hflip=0.5), eval_transform(cfg)
    rates: dict[str, list[float]] = {f"{p}_{w}": [] for p in ("train", "val") for w in ("files", "decoded")}
    walls: dict[str, list[float]] = {name: [] for name in rates}
    for r in range(profile.images_rounds):
        order = ("files", "decoded") if r % 2 == 0 else ("decoded", "files")
        for way in order:
            for part, split, transform, seed in (
                ("train", task.train if way == "files" else decoded["train"], train, r + 1),
                ("val", task.val if way == "files" else decoded["val"], val, None),
            ):
                per_cpu, per_wall = epoch_rate(split, transform, shuffle_seed=seed)
                rates[f"{part}_{way}"].append(per_cpu)
                walls[f"{part}_{way}"].append(per_wall)
    images = len(task.train) + len(task.val)
    pil_epoch_s = len(task.train) / statistics.median(rates["train_files"])  # CPU-seconds
    size = (
        f"{images:,} JPEGs of 500x375 px ({mean_kb:.0f} KB), 224 px input, batch {BATCH}, 1 thread, no workers; "
        "images per CPU-second"
    )
    n_train, n_val = len(task.train), len(task.val)

    def whole_epoch(way: str, r: int) -> float:  # a trial's epoch: its training pass and its validation pass
        cpu_s = n_train / rates[f"train_{way}"][r] + n_val / rates[f"val_{way}"][r]
        return (n_train + n_val) / cpu_s

    whole = {way: [whole_epoch(way, r) for r in range(profile.images_rounds)] for way in ("files", "decoded")}
    figures = [
        Figure(
            "images",
            "a trial's epoch (training + validation): decoded once / per-epoch PIL images/s per core",
            [d / f for d, f in zip(whole["decoded"], whole["files"], strict=True)],
            goal=(">=", 3.0),
            over="rounds",
            how=(
                f"{size}; {n_train:,} training images (light augmentation, hflip 0.5) and {n_val:,} validation "
                f"images: decoded {statistics.median(whole['decoded']):.0f} img/s against PIL "
                f"{statistics.median(whole['files']):.0f} img/s, alternating epoch by epoch"
            ),
        ),
        Figure(
            "images",
            "training epoch (light augmentation): decoded once / per-epoch PIL images/s per core",
            [d / f for d, f in zip(rates["train_decoded"], rates["train_files"], strict=True)],
            goal=(">=", 3.0),
            over="rounds",
            how=(
                f"decoded {statistics.median(rates['train_decoded']):.0f} img/s against PIL "
                f"{statistics.median(rates['train_files']):.0f} img/s; each crop is still resampled (bicubic) "
                "and each batch written as floats, on both sides"
            ),
        ),
        Figure(
            "images",
            "validation pass: decoded once / per-epoch PIL images/s per core",
            [d / f for d, f in zip(rates["val_decoded"], rates["val_files"], strict=True)],
            over="rounds",
            how=(
                f"decoded {statistics.median(rates['val_decoded']):.0f} img/s against PIL "
                f"{statistics.median(rates['val_files']):.0f} img/s; the same bits (tests/trainables/test_decoded.py)"
            ),
        ),
        Figure(
            "images",
            "the one-time decode, in per-epoch PIL training epochs",
            [decode_s / pil_epoch_s],
            over="sweep",
            how=(
                f"{images:,} images decoded and resized once in {decode_s:.1f} CPU-s ({kept_mb:.0f} MiB kept); "
                f"a PIL training epoch of {len(task.train):,} images takes {pil_epoch_s:.1f} CPU-s; the driver "
                f"decodes on all its cores"
            ),
        ),
    ]
    details = {
        "images_per_cpu_s": rates,
        "images_per_wall_s": walls,
        "decode_s": decode_s,
        "kept_mib": kept_mb,
        "check_s": check_s,
        "generate_s": made_s,
        "mean_file_kb": mean_kb,
        "images": images,
    }
    return Section("Images decoded once", figures, details)
