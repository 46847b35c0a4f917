import torch

from trainables.data import batches, load_digits_task


def test_few_shot_split_is_balanced_disjoint_and_deterministic():
    a = load_digits_task([5, 6, 7], train_per_class=4, val_per_class=10, image_size=16, seed=3)
    b = load_digits_task([5, 6, 7], train_per_class=4, val_per_class=10, image_size=16, seed=3)
    c = load_digits_task([5, 6, 7], train_per_class=4, val_per_class=10, image_size=16, seed=4)
    assert a.class_names == ("5", "6", "7") and a.num_classes == 3
    assert a.train.images.shape == (12, 1, 16, 16) and len(a.val) == 30
    assert torch.bincount(a.train.labels).tolist() == [4, 4, 4]
    assert torch.equal(a.train.images, b.train.images)
    assert not torch.equal(a.train.images, c.train.images)
    train_rows = {tuple(x.flatten().tolist()) for x in a.train.images}
    assert not any(tuple(x.flatten().tolist()) in train_rows for x in a.val.images)
    assert 0.0 <= float(a.train.images.min()) and float(a.train.images.max()) <= 1.0


def test_source_task_uses_every_image_for_training():
    source = load_digits_task([0, 1], train_per_class=None, val_per_class=None, image_size=8, seed=0)
    assert len(source.train) == 178 + 182 and len(source.val) == 0


def test_shuffled_batches_cover_the_split_once_and_repeat_per_seed():
    task = load_digits_task([0, 1], train_per_class=10, val_per_class=1, image_size=8, seed=0)
    labels = lambda seed: torch.cat([y for _, y in batches(task.train, 3, shuffle_seed=seed)])  # noqa: E731
    assert sorted(labels(1).tolist()) == sorted(task.train.labels.tolist())
    assert torch.equal(labels(1), labels(1))
