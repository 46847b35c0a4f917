"""Source weights for every backbone of a sweep, placed in Ray's object store once.

- `pretrain`: each backbone is trained on the spec's source task, in parallel as Ray tasks,
  and cached under `<storage>/pretrained/` (local or S3) by a hash of everything that determines it.
- `hub` / `file:<path>`: loaded on the driver through timm (trainables.weights).
- `none`: nothing to transfer.
Trials receive one object reference per backbone and fetch only the one they use.
"""

from __future__ import annotations

import hashlib
import json

import ray
import timm
import torch
from safetensors.torch import load, save

from orchestrator import faults
from orchestrator.errors import SpecError
from orchestrator.spec import SweepSpec
from orchestrator.store import Storage
from trainables.data import TaskData
from trainables.pretrain import pretrain_backbone
from trainables.weights import WeightsError, load_source_state, parse_source


def external_weights(spec: SweepSpec, source: str) -> dict[str, dict[str, torch.Tensor]]:
    """hub / file:<path> weights of every backbone, loaded on the driver (empty for other sources)."""
    kind = spec.weights.source
    if parse_source(kind)[0] in ("pretrain", "none"):
        return {}
    states = {}
    for backbone in spec.backbones:
        try:
            states[backbone] = load_source_state(backbone, kind)
        except WeightsError as exc:
            raise SpecError(source, "weights.source", str(exc)) from None
    return states


def source_weight_refs(
    spec: SweepSpec,
    storage: Storage,
    *,
    cpus: float,
    loaded: dict[str, dict[str, torch.Tensor]],
    source_data: TaskData | None,
) -> dict[str, ray.ObjectRef]:
    """One object-store reference per backbone: pretrained on `source_data` (for `pretrain`), or
    the weights external_weights already read."""
    states = pretrained_on_source(spec, source_data, storage, cpus=cpus) if source_data is not None else loaded
    return {backbone: ray.put(state) for backbone, state in states.items()}


CACHE_DIR = "pretrained"  # under `storage`, shared by every experiment there


def cache_key(spec: SweepSpec, backbone: str) -> str:
    p = spec.weights.pretrain
    identity = {
        "backbone": backbone,
        "dataset": p.dataset if isinstance(p.dataset, str) else p.dataset.model_dump(),
        "classes": p.classes,
        "epochs": p.epochs,
        "lr": p.lr,
        "image_size": spec.data.image_size,
        "seed": spec.search.seed,
        "timm": timm.__version__,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def pretrained_on_source(spec: SweepSpec, source_data: TaskData, storage: Storage, *, cpus: float) -> dict[str, dict]:
    names = {b: f"{b}-{cache_key(spec, b)}.safetensors" for b in spec.backbones}
    missing = [b for b, name in names.items() if not storage.exists(CACHE_DIR, name)]
    if missing:
        print(
            f"Pretraining {len(missing)} backbone(s) on the source task in parallel: {', '.join(missing)}", flush=True
        )
        task_ref = ray.put(source_data)
        remote = ray.remote(num_cpus=cpus)(_pretrain)
        p = spec.weights.pretrain
        refs = {
            b: remote.remote(b, task_ref, spec.data.image_size, p.epochs, spec.search.seed, p.lr, max(1, int(cpus)))
            for b in missing
        }
        faults.reach("pretraining")
        for backbone, ref in refs.items():
            state = {k: v.contiguous() for k, v in ray.get(ref).items()}
            storage.write_bytes(save(state), CACHE_DIR, names[backbone])
    return {b: load(storage.read_bytes(CACHE_DIR, name)) for b, name in names.items()}


def _pretrain(backbone: str, task: TaskData, image_size: int | None, epochs: int, seed: int, lr: float, threads: int):
    return pretrain_backbone(backbone, task, image_size=image_size, epochs=epochs, seed=seed, lr=lr, threads=threads)
