"""An image folder decoded once and fed from tensors gives the trial what decoding every epoch gave it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from trainables.data import DataError, load_imagefolder_task
from trainables.decoded import decode, decoded_bytes, image_sizes, sweep_input
from trainables.loop import evaluate, train_one_epoch
from trainables.models import create_backbone
from trainables.seeds import seed_epoch
from trainables.transforms import data_config, eval_transform, loader, train_transform

SIZE = 48


def _photos(root, per_class: int = 12) -> None:
    """JPEG photos of two kinds of shapes on warm or cool gradients, in landscape and portrait, of unequal sizes."""
    rng = np.random.default_rng(0)
    for label, name in enumerate(("wide", "round")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            w, h = (120 + 4 * i, 90) if i % 3 else (90, 120)
            ramp = np.linspace(0, 200, w)[None, :, None] * np.array([[1.0, 0.7, 0.4], [0.4, 0.7, 1.0]][label])
            pixels = np.clip(ramp + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
            image, draw = Image.fromarray(pixels), None
            draw = ImageDraw.Draw(image)
            for _ in range(3):
                x, y = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 40))
                draw.ellipse([x, y, x + 30, y + 30] if label else [x, y, x + 40, y + 12], fill=(250, 250, 250))
            image.save(root / name / f"{i}.jpg", quality=90)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    _photos(root)
    task = load_imagefolder_task(root, val_fraction=0.25, seed=0)
    cfg = data_config(create_backbone("test_resnet", 2), SIZE)
    decoded = {
        name: dataclasses.replace(split, decoded=decode(split.paths, SIZE, cfg["interpolation"]))
        for name, split in (("train", task.train), ("val", task.val))
    }
    return task, decoded, cfg


def _alike(images: torch.Tensor, expected: torch.Tensor) -> list[float]:
    """Each image's correlation with its counterpart."""
    return [
        float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])
        for a, b in zip(images, expected, strict=True)
    ]


def _epoch(split, transform, seed: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    seed_epoch(3, seed)  # as the trial seeds each epoch: the augmentations draw from it
    batches = list(loader(split, transform, batch_size=5, shuffle_seed=seed))
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


def test_decoded_images_are_kept_at_the_input_size_with_their_aspect_and_file_size(folder):
    task, decoded, _ = folder
    images = decoded["train"].decoded
    assert len(images) == len(task.train) and images.shorter == SIZE
    assert all(min(shape) == SIZE for shape in images.shapes.tolist())
    assert images.originals.tolist() == [list(s) for s in image_sizes(task.train.paths)]
    assert images.pixels.nbytes == decoded_bytes(image_sizes(task.train.paths), SIZE)
    assert images.image(0).shape == (3, *images.shapes[0]) and images.image(0).dtype == torch.uint8


def test_without_augmentation_the_batches_are_the_same_bits_in_the_same_order(folder):
    task, decoded, cfg = folder
    for name, transform in (("train", train_transform(cfg, "none")), ("val", eval_transform(cfg))):
        split = getattr(task, name)
        (images, labels), (expected, expected_labels) = _epoch(decoded[name], transform), _epoch(split, transform)
        assert torch.equal(labels, expected_labels) and torch.equal(images, expected)


@pytest.mark.parametrize("augment", ["light", "strong"])
def test_augmentations_draw_the_same_crops_flips_and_policies(folder, augment):
    """The same random draws, so each image is the same view of the same photo; the only difference
    is that the crop is resampled from the input size rather than the file's full size."""
    task, decoded, cfg = folder
    transform = train_transform(cfg, augment, hflip=0.5)
    (images, labels), (expected, expected_labels) = _epoch(decoded["train"], transform), _epoch(task.train, transform)
    assert torch.equal(labels, expected_labels) and images.shape == expected.shape
    alike = _alike(images, expected)
    assert min(alike) > (0.95 if augment == "light" else 0.6) and np.median(alike) > 0.97, alike
    # a different draw (another epoch) is a different view: what "alike" means above
    other, _ = _epoch(decoded["train"], transform, seed=8)
    assert np.median(_alike(other, expected)) < 0.9


def _train(train, val, cfg, augment: str, seed: int) -> list[tuple[float, float]]:
    """(train loss, val loss) of each of 3 epochs of the recipe's loop."""
    torch.manual_seed(0)
    model = create_backbone("test_resnet", 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    history = []
    for epoch in (1, 2, 3):
        seed_epoch(seed, epoch)
        batches = loader(train, train_transform(cfg, augment, hflip=0.5), batch_size=6, shuffle_seed=epoch)
        model.train()
        loss = train_one_epoch(model, batches, optimizer, device=torch.device("cpu")).loss
        val_loss = evaluate(model, loader(val, eval_transform(cfg), batch_size=8), device=torch.device("cpu"))["loss"]
        history.append((loss, val_loss))
    return history


def test_training_on_decoded_images_without_augmentation_gives_the_same_metrics_bit_for_bit(folder):
    task, decoded, cfg = folder
    assert _train(decoded["train"], decoded["val"], cfg, "none", 0) == _train(task.train, task.val, cfg, "none", 0)


def test_training_on_decoded_augmented_images_gives_metrics_equal_within_noise(folder):
    """Apart from decoding every epoch by no more than twice what other augmentation seeds move it
    (the crops are resampled from the input size, so they differ a little)."""
    task, decoded, cfg = folder
    files = _train(task.train, task.val, cfg, "light", 0)
    on_tensors = _train(decoded["train"], decoded["val"], cfg, "light", 0)
    reseeded = [_train(task.train, task.val, cfg, "light", seed) for seed in (1, 2)]

    def apart(run: list, metric: int) -> float:
        return sum(abs(a[metric] - b[metric]) for a, b in zip(run, files, strict=True))

    for metric in (0, 1):  # train loss, val loss
        noise = float(np.mean([apart(run, metric) for run in reseeded]))
        assert 0 < apart(on_tensors, metric) <= 2 * noise, (metric, apart(on_tensors, metric), noise)


def test_the_sweep_keeps_images_at_its_largest_input_size():
    assert sweep_input(["test_resnet", "mobilenetv3_small_050"], None) == (224, "bicubic")
    assert sweep_input(["test_resnet"], None) == (160, "bilinear")
    assert sweep_input(["test_resnet", "mobilenetv3_small_050"], 64)[0] == 64  # the spec's data.image_size


def test_a_file_that_changed_since_the_check_fails_its_decoding_in_one_line(folder, tmp_path):
    task, _, _ = folder
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(open(task.train.paths[0], "rb").read()[:200])  # cut short
    with pytest.raises(DataError, match=r"broken\.jpg: corrupt or unreadable image"):
        decode((task.train.paths[1], str(broken)), SIZE, "bilinear")
