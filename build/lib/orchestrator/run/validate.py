"""`orchestrator validate`: every check `sweep` makes, plus a dry build of every backbone."""

from __future__ import annotations

from pathlib import Path

import torch

from orchestrator.errors import SpecError
from orchestrator.run.inputs import target_task
from orchestrator.spec import CategoricalParam, FloatParam, IntParam, load_spec
from trainables.models import create_backbone, layer_groups
from trainables.transforms import data_config


def validate(spec_path: str | Path, *, data: bool = True) -> str:
    """Raises SpecError on the first problem; returns a one-paragraph report otherwise.

    `data=False` checks a spec meant for another machine (a cluster with its own volumes):
    data folders and weights files are not looked for here."""
    source = str(spec_path)
    spec = load_spec(spec_path, local_files=data)
    task = target_task(spec, source) if data else None
    num_classes = task.num_classes if task else len(spec.data.classes or [0, 1])
    drop_path = _largest(spec.space.get("drop_path", 0.0))
    built = []
    for name in spec.backbones:
        size = None
        try:
            # The meta device checks shapes end to end without allocating or computing anything.
            with torch.device("meta"):
                model = create_backbone(name, num_classes, drop_path=drop_path)
                size = data_config(model, spec.data.image_size)["input_size"]
                model.eval()(torch.empty(2, *size))
        except Exception as exc:  # noqa: BLE001 - any failure here makes the backbone unusable for this spec
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            shape = f" on {size[1]}x{size[2]} images" if size else ""
            raise SpecError(source, "space.backbone", f"{name} cannot run{shape}: {reason}") from None
        built.append(f"{name} ({len(layer_groups(model).body)} layer groups, {size[1]}px)")
    return (
        f"{spec_path}: OK. experiment {spec.experiment!r}: {len(spec.searched)} searched and "
        f"{len(spec.fixed)} fixed parameters, {spec.search.trials} trials ({spec.search.algorithm}, "
        f"{spec.early_stopping.scheduler}, up to {spec.early_stopping.max_epochs} epochs); "
        + (
            f"{task.num_classes} classes, {len(task.train)} train / {len(task.val)} val images; "
            if task
            else "data not checked (--no-data); "
        )
        + f"backbones: {', '.join(built)}"
    )


def _largest(entry) -> float:
    if isinstance(entry, FloatParam | IntParam):
        return float(entry.high)
    if isinstance(entry, CategoricalParam):
        return float(max(entry.choices))
    return float(entry)
