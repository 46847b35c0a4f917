"""The GPU check: refused in one line where there is no GPU, and its steps run on the CPU at toy sizes."""

import json
import os

import pytest
import torch

from benchmarks import gpu_check


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_without_a_gpu_it_says_so_and_stops(capsys, tmp_path):
    assert gpu_check.main(["--out", str(tmp_path)]) == 2
    assert "no CUDA device here" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.integration
def test_the_dry_run_sweeps_both_ways_and_writes_every_figure(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(gpu_check.SHARE_ENV, raising=False)
    assert gpu_check.main(["--dry-run", "--out", str(tmp_path)]) == 0
    assert gpu_check.SHARE_ENV not in os.environ  # its second sweep's setting does not outlive it
    results = json.loads((tmp_path / "gpu_check.json").read_text())
    for way in ("decoded", "per-epoch"):
        assert results[way]["record_check"] == [] and results[way]["epochs"] > 0
        assert set(results[way]["fitted_batch_sizes"]) == set(gpu_check.DRY["backbones"])
    assert "Training step" in (tmp_path / "gpu_check.md").read_text()
