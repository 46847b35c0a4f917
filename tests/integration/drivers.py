"""`orchestrator` run as a user runs it, in its own process (so it can be killed like a lost
machine), and the specs the process-level tests share."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

SPEC = textwrap.dedent("""\
    experiment: {experiment}
    data: {{classes: [5, 6, 7], train_per_class: {per_class}, val_per_class: 20, image_size: 32}}
    weights: {weights}
    search: {{trials: {trials}, concurrent: {concurrent}, seed: 0, algorithm: {algorithm}{search_extra}}}
    early_stopping: {early_stopping}
    space:
    {space}
      batch_size: 8
    mlflow: {{tracking_uri: {tracking_uri}, register_best_as: {experiment}-best}}
    storage: {storage}
""")
PRETRAIN = "{source: pretrain, pretrain: {classes: [0, 1, 2], epochs: 1}}"
SEARCHED = """\
  backbone: {type: categorical, choices: [test_resnet, test_vit]}
  transfer_layers: {type: float, low: 0.0, high: 1.0}
  unfreeze: {type: categorical, choices: [frozen, full]}
  lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}"""


def write_spec(workdir: Path, **fields) -> Path:
    values = {
        "experiment": "it",
        "per_class": 8,
        "weights": PRETRAIN,
        "trials": 4,
        "concurrent": 2,
        "algorithm": "tpe",
        "search_extra": "",
        "early_stopping": "{scheduler: none, max_epochs: 3}",
        "space": SEARCHED,
        "tracking_uri": f"sqlite:///{workdir / 'mlflow.db'}",
        "storage": "./runs",
        **fields,
    }
    path = workdir / f"{values['experiment']}.yaml"
    path.write_text(SPEC.format(**values))
    return path


class Driver:
    """`orchestrator <command> SPEC` in its own process group, its output collected line by line."""

    def __init__(self, spec: Path, *extra: str, command: str = "sweep", env: dict | None = None):
        self.lines: list[str] = []
        self.started = time.time()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", command, str(spec), *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=spec.parent,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # so SIGKILL takes the driver and the Ray cluster it started
        )
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def trial_lines(self) -> int:
        return sum(line.startswith("[") for line in self.lines)

    def wait_for(self, condition, timeout: float = 240) -> None:
        deadline = time.time() + timeout
        while not condition():
            assert self.process.poll() is None, "the driver ended before the moment came:\n" + self.output()
            assert time.time() < deadline, "timed out waiting:\n" + self.output()
            time.sleep(0.2)

    def kill(self) -> float:
        os.killpg(self.process.pid, signal.SIGKILL)
        return self.wait()

    def interrupt(self) -> float:
        """Ctrl-C in a terminal: SIGINT to the whole foreground process group."""
        os.killpg(self.process.pid, signal.SIGINT)
        return self.wait()

    def wait(self, timeout: float = 400) -> float:
        self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return time.time() - self.started

    def finish(self, timeout: float = 400) -> float:
        elapsed = self.wait(timeout)
        assert self.process.returncode == 0, self.output()
        return elapsed

    def output(self) -> str:
        return "".join(self.lines)[-6000:]


def trial_records(workdir: Path, experiment: str) -> dict[str, list[dict]]:
    """Every trial's results as Ray recorded them (result.json, one line per report)."""
    records = {}
    for result in (workdir / "runs" / experiment).glob("sweep-*/*/result.json"):
        records[result.parent.name] = [json.loads(line) for line in result.read_text().splitlines() if line]
    return records


def checkpoints(workdir: Path, experiment: str) -> int:
    return len(list((workdir / "runs" / experiment).glob("sweep-*/*/checkpoint_*/history.json")))


def check(spec: Path) -> subprocess.CompletedProcess:
    """`orchestrator check SPEC`, as a user would run it after the sweep."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", "check", str(spec)],
        capture_output=True,
        text=True,
        cwd=spec.parent,
        timeout=120,
    )
