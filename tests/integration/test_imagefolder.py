"""An image folder of generated PNGs, swept with weights from a local file; and the same folder
with one corrupt image, which must fail before anything is started or written."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import numpy as np
import pytest
import ray
import torch
from mlflow import MlflowClient
from PIL import Image
from safetensors.torch import save_file

from orchestrator.cli import main
from orchestrator.run import run_sweep
from trainables.models import create_backbone

pytestmark = pytest.mark.integration


def _make_folder(root: Path) -> None:
    """Two separable classes: bright-top vs bright-bottom noise images, in train/val/test."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("val", 6), ("test", 6)):
        for cls in ("top", "bottom"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                image = rng.integers(0, 80, (24, 24, 3), dtype=np.uint8)
                rows = slice(0, 12) if cls == "top" else slice(12, 24)
                image[rows] += 150
                Image.fromarray(image).save(folder / f"{i}.png")


def _spec(root: Path, weights: Path) -> str:
    return textwrap.dedent(f"""\
        experiment: folder
        data: {{dataset: {{imagefolder: {root}}}, train_per_class: null, image_size: 32}}
        weights: {{source: "file:{weights}"}}
        search: {{algorithm: random, trials: 3, concurrent: 2, seed: 0}}
        early_stopping: {{scheduler: none, max_epochs: 2}}
        space:
          backbone: test_resnet
          transfer_layers: {{type: float, low: 0.0, high: 1.0}}
          unfreeze: {{type: categorical, choices: [frozen, full]}}
          augment: {{type: categorical, choices: [none, light]}}
          layer_decay: 0.8
          l2sp: 0.01
          batch_size: 8
        mlflow: {{register_best_as: folder-best}}
        storage: ./runs
    """)


@pytest.fixture
def workdir(tmp_path):
    previous = Path.cwd()
    os.chdir(tmp_path)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    _make_folder(tmp_path / "images")
    weights = tmp_path / "source.safetensors"
    torch.manual_seed(0)
    save_file(create_backbone("test_resnet", 7).state_dict(), str(weights))
    (tmp_path / "spec.yaml").write_text(_spec(tmp_path / "images", weights))
    try:
        yield tmp_path
    finally:
        os.chdir(previous)
        ray.shutdown()


def test_imagefolder_sweep_with_file_weights_logs_test_metrics(workdir):
    summary = run_sweep(workdir / "spec.yaml")
    assert summary.outcomes == {"completed": 3}
    assert set(summary.test_metrics) == {"test_acc", "test_loss", "test_f1", "test_precision", "test_recall"}
    client = MlflowClient(summary.tracking_uri)
    best = client.get_run(summary.best_run_id)
    assert best.data.metrics["test_acc"] == pytest.approx(summary.test_metrics["test_acc"])
    assert client.get_run(summary.parent_run_id).data.metrics["test_acc"] == pytest.approx(
        summary.test_metrics["test_acc"]
    )
    assert any(key.startswith("drift/") for key in best.data.metrics)
    assert best.data.metrics["macs"] > 0 and best.data.metrics["latency_ms"] > 0
    assert best.data.params["layer_decay"] == "0.8" and best.data.params["l2sp"] == "0.01"


def test_corrupt_image_fails_before_anything_is_written(workdir, capsys):
    (workdir / "images" / "train" / "top" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    assert main(["sweep", str(workdir / "spec.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train/top/3.png: corrupt" in err[0] and "data.dataset" in err[0]
    assert not (workdir / "mlflow.db").exists() and not (workdir / "runs").exists()
