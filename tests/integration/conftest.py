"""The small real sweep that several integration modules read: it runs once per test session."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from orchestrator.run import run_sweep

TRIALS, MAX_EPOCHS = 10, 4
SPEC = textwrap.dedent(f"""\
    experiment: it
    data: {{classes: [5, 6, 7], train_per_class: 8, val_per_class: 20, image_size: 32}}
    weights: {{source: pretrain, pretrain: {{classes: [0, 1, 2], epochs: 1}}}}
    search:
      trials: {TRIALS}
      concurrent: 2
      seed: 0
      baselines: [{{backbone: test_resnet, transfer_layers: 0.0, unfreeze: full}}]
    early_stopping: {{max_epochs: {MAX_EPOCHS}, grace_period: 1, reduction_factor: 2}}
    space:
      backbone: {{type: categorical, choices: [test_resnet, test_vit]}}
      transfer_layers: {{type: float, low: 0.0, high: 1.0}}
      unfreeze: {{type: categorical, choices: [frozen, full]}}
      lr: {{type: float, low: 1.0e-3, high: 1.0e-2, log: true}}
      batch_size: 8
    mlflow: {{register_best_as: it-best}}
    storage: ./runs
""")


@pytest.fixture(scope="session")
def small_sweep(tmp_path_factory) -> tuple[Path, object]:
    """(working directory, SweepSummary) of SPEC run once. Ray is left running for the modules
    that resume it; each module shuts Ray down when it is done with it."""
    workdir = tmp_path_factory.mktemp("sweep")
    previous = Path.cwd()
    os.chdir(workdir)  # storage and the default MLflow store are relative to it
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        (workdir / "spec.yaml").write_text(SPEC)
        return workdir, run_sweep(workdir / "spec.yaml")
    finally:
        os.chdir(previous)


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray of two CPUs for a module's sweeps of the data-free trial, shut down after it."""
    import ray

    ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield
    ray.shutdown()
