import os

import numpy as np
import pytest
from PIL import Image

from trainables.data import DataError, load_digits_task, load_imagefolder_task


def test_few_shot_split_is_balanced_disjoint_and_deterministic():
    a = load_digits_task([5, 6, 7], train_per_class=4, val_per_class=10, seed=3)
    b = load_digits_task([5, 6, 7], train_per_class=4, val_per_class=10, seed=3)
    c = load_digits_task([5, 6, 7], train_per_class=4, val_per_class=10, seed=4)
    assert a.class_names == ("5", "6", "7") and a.num_classes == 3
    assert a.train.pixels.shape == (12, 8, 8) and len(a.val) == 30
    assert np.bincount(a.train.labels).tolist() == [4, 4, 4]
    assert np.array_equal(a.train.pixels, b.train.pixels)
    assert not np.array_equal(a.train.pixels, c.train.pixels)
    train_rows = {x.tobytes() for x in a.train.pixels}
    assert not any(x.tobytes() in train_rows for x in a.val.pixels)
    assert a.train.image(0).mode == "RGB" and a.train.image(0).size == (8, 8)


def test_source_task_uses_every_image_for_training():
    source = load_digits_task([0, 1], train_per_class=None, val_per_class=None, seed=0)
    assert len(source.train) == 178 + 182 and len(source.val) == 0


def _folder(root, classes, n, size=12):
    rng = np.random.default_rng(0)
    for cls in classes:
        (root / cls).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")


def test_imagefolder_with_val_fraction_is_seeded_and_stratified(tmp_path):
    _folder(tmp_path, ["cat", "dog"], 10)
    task = load_imagefolder_task(tmp_path, val_fraction=0.2, seed=1)
    assert task.class_names == ("cat", "dog") and task.test is None
    assert np.bincount(task.val.labels).tolist() == [2, 2] and len(task.train) == 16
    assert set(task.train.paths).isdisjoint(task.val.paths)
    assert task.val.paths == load_imagefolder_task(tmp_path, val_fraction=0.2, seed=1).val.paths


def test_imagefolder_with_train_val_test_folders_and_few_shot(tmp_path):
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        _folder(tmp_path / split, ["a", "b"], n)
    task = load_imagefolder_task(tmp_path, train_per_class=4, seed=0)
    assert len(task.train) == 8 and len(task.val) == 4 and len(task.test) == 6
    assert task.train.image(0).size == (12, 12)


@pytest.mark.parametrize(
    "breakage,words",
    [
        (
            lambda root: (root / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png"),
            "broken.png: corrupt",
        ),
        (lambda root: (root / "b" / "notes.txt").write_text("hello"), "notes.txt: not an image file"),
    ],
)
def test_corrupt_or_non_image_files_are_named(tmp_path, breakage, words):
    _folder(tmp_path, ["a", "b"], 3)
    breakage(tmp_path)
    with pytest.raises(DataError, match=words):
        load_imagefolder_task(tmp_path)


def test_requested_class_without_a_folder_is_named(tmp_path):
    _folder(tmp_path, ["a", "b"], 3)
    with pytest.raises(DataError, match="class 'c' has no folder"):
        load_imagefolder_task(tmp_path, classes=["a", "c"])


def test_links_inside_the_folder_are_followed(tmp_path):
    root = tmp_path / "data"
    _folder(root, ["a", "b"], 3)
    (root / "a" / "copy.png").symlink_to(root / "b" / "0.png")
    (tmp_path / "data-link").symlink_to(root)  # the folder itself may be a link
    task = load_imagefolder_task(tmp_path / "data-link", val_fraction=0.25)
    assert len(task.train) + len(task.val) == 7


@pytest.mark.parametrize(
    "breakage,words",
    [
        (lambda root, out: (root / "a" / "x.png").symlink_to(out / "0.png"), "x.png: a link that leads out"),
        (lambda root, out: (root / "c").symlink_to(out), "c: a link that leads out"),
        (lambda root, out: (root / "a" / "sub").symlink_to(out), "sub: a link that leads out"),
        (lambda root, out: (root / "a" / "x.png").symlink_to("../../outside/0.png"), "leads out"),
        (lambda root, out: (root / "a" / "x.png").symlink_to(root / "a" / "x.png"), "a symlink loop"),
        (lambda root, out: (root / "a" / "x.png").symlink_to(root / "gone.png"), "x.png: a broken link"),
        (lambda root, out: (root / "a" / "up").symlink_to(root), "reached twice"),
        (lambda root, out: os.mkfifo(root / "b" / "x.png"), "x.png: not a regular file"),
    ],
    ids=["file_out", "class_out", "subfolder_out", "relative_out", "loop", "dangling", "cycle", "fifo"],
)
def test_links_that_leave_the_folder_and_special_files_are_refused(tmp_path, breakage, words):
    root = tmp_path / "data"
    _folder(root, ["a", "b"], 3)
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.new("RGB", (8, 8)).save(outside / "0.png")
    breakage(root, outside)
    with pytest.raises(DataError, match=words):
        load_imagefolder_task(root)


def test_hidden_files_and_folders_are_skipped(tmp_path):
    _folder(tmp_path, ["a", "b"], 3)
    (tmp_path / "a" / ".DS_Store").write_bytes(b"\0")
    (tmp_path / "a" / ".ipynb_checkpoints").mkdir()
    (tmp_path / "a" / ".ipynb_checkpoints" / "notes.txt").write_text("x")
    (tmp_path / ".git").mkdir()
    assert load_imagefolder_task(tmp_path).class_names == ("a", "b")


@pytest.mark.parametrize(
    "root,words",
    [("/tmp/" + "x" * 300, "a name of 300 bytes"), ("/tmp/a\0b", "NUL"), ("~no_such_user_4b1d/x", "home directory")],
)
def test_image_folder_paths_the_os_cannot_take_are_refused(root, words):
    with pytest.raises(DataError, match=words):
        load_imagefolder_task(root)
