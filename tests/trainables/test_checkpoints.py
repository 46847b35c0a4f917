"""What a trial's checkpoints hold, and that a trial resumed from any of them continues bit for bit.

The real trial runs in this process with a stand-in for Tune's session that keeps every
checkpoint in a trial folder as Tune would (`checkpoint_000000`, ...); a resumed run is handed
one of them, with only the older ones beside it, as after a crash.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from ray import tune

import trainables.finetune as recipe
from trainables.checkpoints import (
    RESUME_EVERY,
    RESUME_FILE,
    WEIGHTS_FILE,
    CheckpointMismatch,
    ResumeSchedule,
    TrialState,
)
from trainables.data import load_digits_task
from trainables.history import HISTORY_FILE
from trainables.models import create_backbone, layer_groups

MAX_EPOCHS = 6
TIMING = ("epoch_time_s", "train_images_per_s", "latency_ms", "node_id")  # differ between any two runs
CONFIG = {
    "backbone": "test_resnet",
    "transfer_layers": 1.0,
    "unfreeze": "gradual",  # frozen groups thaw one by one: what a resume point leaves out changes
    "unfreeze_every": 2,
    "lr": 3e-3,
    "batch_size": 8,
    "max_epochs": MAX_EPOCHS,
    "weights": "pretrain",
    "seed": 3,
}


class Session:
    """Tune's session as the trial sees it: each report's checkpoint copied into `trial_dir`."""

    def __init__(self, trial_dir: Path, resume_from: Path | None = None):
        self.trial_dir, self.resume_from, self.reports = trial_dir, resume_from, []
        self.index = len(list(trial_dir.glob("checkpoint_*")))

    def report(self, metrics: dict, checkpoint=None) -> None:
        self.reports.append(metrics)
        if checkpoint is not None:
            shutil.copytree(checkpoint.path, self.trial_dir / f"checkpoint_{self.index:06d}")
            self.index += 1

    def get_checkpoint(self):
        return tune.Checkpoint(str(self.resume_from)) if self.resume_from else None

    def get_context(self):
        resources = SimpleNamespace(required_resources={"CPU": 1.0})
        return SimpleNamespace(get_trial_resources=lambda: resources)

    def __getattr__(self, name):
        return getattr(tune, name)


@pytest.fixture(scope="module")
def task():
    return load_digits_task([5, 6, 7], train_per_class=6, val_per_class=4, seed=0)


@pytest.fixture(scope="module")
def source():
    torch.manual_seed(11)
    return {"test_resnet": create_backbone("test_resnet", 3).state_dict()}


def run(monkeypatch, task, source, trial_dir: Path, resume_from: Path | None = None) -> Session:
    session = Session(trial_dir, resume_from)
    ray_stand_in = SimpleNamespace(get=lambda ref: ref, get_runtime_context=lambda: SimpleNamespace(get_node_id=str))
    monkeypatch.setattr(recipe, "tune", session)
    monkeypatch.setattr(recipe, "ray", ray_stand_in)
    threads = torch.get_num_threads()
    try:
        recipe.finetune(dict(CONFIG), task=task, image_size=32, source_weights=source)
    finally:
        torch.set_num_threads(threads)
    return session


@pytest.fixture(scope="module")
def uninterrupted(task, source, tmp_path_factory):
    trial_dir = tmp_path_factory.mktemp("uninterrupted")
    with pytest.MonkeyPatch.context() as monkeypatch:
        return trial_dir, run(monkeypatch, task, source, trial_dir).reports


def _without_timing(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in TIMING}


def test_checkpoints_hold_the_history_every_epoch_a_resume_point_every_few_and_the_weights_at_the_end(
    uninterrupted,
):
    trial_dir, reports = uninterrupted
    assert [r["epoch"] for r in reports] == list(range(1, MAX_EPOCHS + 1))
    folders = sorted(trial_dir.glob("checkpoint_*"))
    assert len(folders) == MAX_EPOCHS and all((f / HISTORY_FILE).is_file() for f in folders)
    resume_points = [epoch for epoch, f in enumerate(folders, 1) if (f / RESUME_FILE).exists()]
    assert resume_points == [e for e in range(1, MAX_EPOCHS) if e % RESUME_EVERY == 0]
    assert [epoch for epoch, f in enumerate(folders, 1) if (f / WEIGHTS_FILE).exists()] == [MAX_EPOCHS]


def test_a_resume_point_leaves_out_the_groups_frozen_since_the_first_epoch_and_their_optimizer_state(
    uninterrupted, task
):
    trial_dir, reports = uninterrupted
    state = torch.load(trial_dir / f"checkpoint_{RESUME_EVERY - 1:06d}" / RESUME_FILE, weights_only=True)
    groups = layer_groups(create_backbone("test_resnet", task.num_classes))
    # gradual, every 2 epochs, all 5 groups transferred: 5, 5, 4, 4 frozen in epochs 1-4; 4 untouched
    assert state["untouched"] == min(r["frozen_groups"] for r in reports[:RESUME_EVERY]) == 4
    left_out = {key for group in groups.body[:4] for key in group}
    assert not left_out & set(state["model"])
    assert set(state["model"]) | left_out == set(
        torch.load(trial_dir / f"checkpoint_{MAX_EPOCHS - 1:06d}" / WEIGHTS_FILE, weights_only=True)
    )
    assert 0 < len(state["optimizer"]["state"]) < sum(len(g) for g in groups.body) + len(groups.head)


@pytest.mark.parametrize("crash_after", [RESUME_EVERY, RESUME_EVERY + 1, 2])
def test_a_trial_resumed_from_any_epochs_checkpoint_continues_bit_for_bit(
    monkeypatch, task, source, uninterrupted, tmp_path, crash_after
):
    """After epoch 4 (a resume point), 5 (the history only: it re-runs epoch 5 from 4) or 2 (no
    resume point yet: it re-runs epochs 1-2), with no later checkpoint left, as after a crash."""
    trial_dir, reports = uninterrupted
    for folder in sorted(trial_dir.glob("checkpoint_*"))[:crash_after]:
        shutil.copytree(folder, tmp_path / folder.name)
    resumed = run(monkeypatch, task, source, tmp_path, resume_from=tmp_path / f"checkpoint_{crash_after - 1:06d}")

    assert [r["epoch"] for r in resumed.reports] == list(range(crash_after + 1, MAX_EPOCHS + 1))  # none twice
    assert [_without_timing(r) for r in resumed.reports] == [_without_timing(r) for r in reports[crash_after:]]
    final = torch.load(tmp_path / f"checkpoint_{MAX_EPOCHS - 1:06d}" / WEIGHTS_FILE, weights_only=True)
    expected = torch.load(trial_dir / f"checkpoint_{MAX_EPOCHS - 1:06d}" / WEIGHTS_FILE, weights_only=True)
    assert final.keys() == expected.keys() and all(torch.equal(final[k], expected[k]) for k in final)


def test_a_resume_point_whose_left_out_groups_changed_is_refused(uninterrupted, task):
    """The left-out groups come from the trial's set-up: other source weights must not resume silently."""
    trial_dir, _ = uninterrupted
    torch.manual_seed(12)  # not the source weights the trial was set up with
    model = create_backbone("test_resnet", task.num_classes)
    state = TrialState(model, torch.optim.AdamW(model.parameters()), layer_groups(model))
    with pytest.raises(CheckpointMismatch, match="first 4 layer groups"):
        state.read(str(trial_dir / f"checkpoint_{RESUME_EVERY - 1:06d}"), torch.device("cpu"))


def test_an_epochs_mixup_draws_repeat_when_the_epoch_is_run_again():
    """timm's mixup draws from numpy's global generator, which the epoch's seed must cover too."""
    from trainables.regularizers import make_mixup
    from trainables.seeds import seed_epoch

    images, labels = torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 0])
    mixed = []
    for _ in range(2):
        seed_epoch(3, 5)
        mixed.append(make_mixup(0.4, 1.0, 0.0, num_classes=3)(images.clone(), labels)[0])
    assert torch.equal(mixed[0], mixed[1])


def test_a_resume_point_is_due_every_few_epochs_and_never_at_the_last():
    schedule = ResumeSchedule(max_epochs=2 * RESUME_EVERY)
    assert [e for e in range(1, 2 * RESUME_EVERY + 1) if schedule.due(e)] == [RESUME_EVERY]


def test_the_weights_written_at_the_last_epoch_load_into_a_fresh_model(uninterrupted, task):
    trial_dir, _ = uninterrupted
    with tempfile.TemporaryDirectory() as scratch:
        shutil.copytree(trial_dir / f"checkpoint_{MAX_EPOCHS - 1:06d}", Path(scratch) / "last")
        model = recipe.load_checkpoint_model(str(Path(scratch) / "last"), CONFIG, task.num_classes)
    saved = torch.load(trial_dir / f"checkpoint_{MAX_EPOCHS - 1:06d}" / WEIGHTS_FILE, weights_only=True)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())
