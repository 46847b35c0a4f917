"""Source weights for `weights.source: pretrain`: trained once per backbone, cached by content hash.

Missing backbones are pretrained in parallel as Ray tasks; the results are written under
`<storage>/pretrained/` so later sweeps (and resumed ones) reuse them.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import ray
import timm
import torch
from safetensors.torch import load_file, save_file

from orchestrator.spec import SweepSpec
from trainables.data import TaskData
from trainables.pretrain import pretrain_backbone


def cache_key(spec: SweepSpec, backbone: str) -> str:
    p = spec.weights.pretrain
    identity = {
        "backbone": backbone,
        "dataset": p.dataset,
        "classes": p.classes,
        "epochs": p.epochs,
        "lr": p.lr,
        "image_size": spec.data.image_size,
        "seed": spec.search.seed,
        "timm": timm.__version__,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def source_weights(
    spec: SweepSpec, backbones: list[str], source: TaskData, cache_dir: Path, *, cpus: float
) -> dict[str, dict[str, torch.Tensor]]:
    """State dicts of every backbone pretrained on the source task, from cache or freshly trained."""
    paths = {b: cache_dir / f"{b}-{cache_key(spec, b)}.safetensors" for b in backbones}
    missing = [b for b, path in paths.items() if not path.exists()]
    if missing:
        print(
            f"Pretraining {len(missing)} backbone(s) on the source task in parallel: {', '.join(missing)}", flush=True
        )
        cache_dir.mkdir(parents=True, exist_ok=True)
        task_ref = ray.put(source)
        remote = ray.remote(num_cpus=cpus)(_pretrain)
        refs = {
            b: remote.remote(
                b, task_ref, spec.weights.pretrain.epochs, spec.search.seed, spec.weights.pretrain.lr, max(1, int(cpus))
            )
            for b in missing
        }
        for backbone, ref in refs.items():
            _atomic_save(ray.get(ref), paths[backbone])
    return {b: load_file(str(path)) for b, path in paths.items()}


def _pretrain(backbone: str, task: TaskData, epochs: int, seed: int, lr: float, threads: int):
    return pretrain_backbone(backbone, task, epochs=epochs, seed=seed, lr=lr, threads=threads)


def _atomic_save(state: dict[str, torch.Tensor], path: Path) -> None:
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
    os.replace(tmp, path)
