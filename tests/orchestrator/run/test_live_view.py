"""The live view as its watcher sees it: one line per ended trial, a status line every period when
the output is a log, a block redrawn in place (and erased before anything else is printed) in a
terminal."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field

import pytest

from orchestrator.run import live_view
from orchestrator.run.live_view import STATUS_EVERY_S, LiveView

ERASE = re.compile(r"\x1b\[(\d+)F\x1b\[J")


@dataclass
class Trial:  # the three attributes of ray.tune's Trial the view reads
    trial_id: str
    config: dict = field(default_factory=lambda: {"backbone": "resnet18", "transfer_layers": 0.5, "lr": 0.00123})
    last_result: dict = field(default_factory=dict)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(live_view.time, "monotonic", clock)
    return clock


def _view(stream, total=4) -> LiveView:
    return LiveView(total=total, metric="val_acc", mode="max", max_epochs=3, stream=stream)


def _run(view: LiveView, trial: Trial, epochs: list[float], clock: Clock, errored=False) -> None:
    view.on_trial_start(0, [], trial)
    for epoch, value in enumerate(epochs, start=1):
        clock.now += 10
        trial.last_result = {"epoch": epoch, "val_acc": value}
        view.on_trial_result(0, [], trial, trial.last_result)
        view.on_step_end(0, [])
    (view.on_trial_error if errored else view.on_trial_complete)(0, [], trial)


def test_a_log_gets_one_line_per_ended_trial_and_a_status_line_a_period(clock):
    out = io.StringIO()
    view = _view(out)
    view.on_step_end(0, [])
    assert out.getvalue() == ""  # no status line at the very start
    _run(view, Trial("aaaa0001"), [0.5, 0.6, 0.7], clock)
    _run(view, Trial("aaaa0002"), [0.4], clock)  # stopped at epoch 1 of 3: pruned
    clock.now += STATUS_EVERY_S
    view.on_trial_start(0, [], Trial("aaaa0003"))
    view.on_step_end(0, [])
    lines = [line for line in out.getvalue().splitlines() if line.startswith("[")]
    assert lines[0].startswith("[  1/4] aaaa0001 completed epoch   3  val_acc 0.700  best 0.700")
    assert "backbone=resnet18 transfer_layers=0.5 lr=0.00123" in lines[0]
    assert lines[1].startswith("[  2/4] aaaa0002 pruned    epoch   1  val_acc 0.400  best 0.700")
    status = [line for line in out.getvalue().splitlines() if line.startswith("status:")]
    assert len(status) == 2  # at 30 s (the first trial's last epoch) and at 70 s; none in between
    assert "0/4 trials ended (none ended yet); running: aaaa0001 3/3" in status[0]
    assert "2/4 trials ended (1 completed, 1 pruned)" in status[1]
    assert "running: aaaa0003 0/3" in status[1] and "best val_acc 0.7 (aaaa0001)" in status[1]
    assert "\x1b" not in out.getvalue()  # no terminal codes in a log


def test_only_completed_trials_can_be_best_and_errors_say_so(clock):
    out = io.StringIO()
    view = _view(out)
    _run(view, Trial("e1"), [0.9], clock, errored=True)
    _run(view, Trial("p1"), [0.95], clock)
    assert view.progress.best is None
    assert "no completed trial yet" in view.status_line(clock.now)
    assert out.getvalue().splitlines()[0].startswith("[  1/4] e1 errored")


def test_time_left_is_the_remaining_epochs_at_the_rate_so_far(clock):
    view = _view(io.StringIO(), total=4)
    assert "time left: estimating" in view.status_line(clock.now)
    _run(view, Trial("t1"), [0.5, 0.6, 0.7], clock)  # 3 epochs in 30 s
    _run(view, Trial("t2"), [0.5, 0.6, 0.7], clock)
    # 2 trials left at 3 epochs each, at 6 epochs per 60 s: 60 s
    assert "about 1m00s left" in view.status_line(clock.now)


def test_a_terminal_gets_a_block_redrawn_in_place_and_erased_before_each_trial_line(clock):
    term = Terminal()
    view = _view(term)
    view.on_trial_start(0, [], Trial("r1"))
    view.on_trial_start(0, [], Trial("r2"))
    clock.now += 1
    view.on_step_end(0, [])
    first_block = term.getvalue()
    assert "r1   " in first_block and "r2   " in first_block and first_block.count("\n") == 4
    trial = Trial("r1", last_result={"epoch": 3, "val_acc": 0.8})
    view.on_trial_complete(0, [], trial)
    after = term.getvalue()[len(first_block) :]
    erase = ERASE.match(after)
    assert erase and int(erase.group(1)) == 4  # back over exactly the block drawn, then erase below
    assert after[erase.end() :].startswith("[  1/4] r1 completed")
    view.on_experiment_end([])
    assert ERASE.search(term.getvalue()[len(first_block) + erase.end() :])  # the last block is erased too
