"""`orchestrator validate`: the full spec check plus a dry build of every backbone."""

from __future__ import annotations

from pathlib import Path

import torch

from orchestrator.errors import SpecError
from orchestrator.spec import load_spec
from orchestrator.sweep import backbones
from trainables.models import create_backbone, layer_groups


def validate(spec_path: str | Path) -> str:
    """Raises SpecError on the first problem; returns a one-paragraph report otherwise."""
    spec = load_spec(spec_path)
    size = spec.data.image_size
    built = []
    for name in backbones(spec):
        try:
            # The meta device checks shapes end to end without allocating or computing anything.
            with torch.device("meta"):
                model = create_backbone(name, len(spec.data.classes))
                model.eval()(torch.empty(2, 3, size, size))
        except Exception as exc:  # noqa: BLE001 - any failure here is an incompatible backbone
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise SpecError(
                str(spec_path), "space.backbone", f"{name} cannot run on {size}x{size} images: {reason}"
            ) from None
        groups = layer_groups(model)
        built.append(f"{name} ({len(groups.body)} layer groups)")
    return (
        f"{spec_path}: OK. experiment {spec.experiment!r}: {len(spec.searched)} searched and "
        f"{len(spec.fixed)} fixed parameters, {spec.search.trials} trials ({spec.search.algorithm}, "
        f"{spec.early_stopping.scheduler}, up to {spec.early_stopping.max_epochs} epochs); "
        f"backbones: {', '.join(built)}"
    )
