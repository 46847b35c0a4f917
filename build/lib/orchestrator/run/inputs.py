"""Builds the target and source tasks a spec names, turning data problems into one-line errors."""

from __future__ import annotations

from orchestrator.errors import SpecError
from orchestrator.spec import (
    DEFAULT_DIGITS_SOURCE,
    DEFAULT_DIGITS_TARGET,
    DataSpec,
    ImageFolderSource,
    PretrainSpec,
    SweepSpec,
)
from trainables.data import DataError, TaskData, load_digits_task, load_imagefolder_task


def target_task(spec: SweepSpec, source: str) -> TaskData:
    data = spec.data
    return _load(data, data.train_per_class, data.val_per_class, spec.search.seed, source, "data")


def source_task(spec: SweepSpec, source: str) -> TaskData:
    """The pretraining task: every image of the source classes is a training image."""
    pretrain = spec.weights.pretrain
    return _load(pretrain, None, None, spec.search.seed, source, "weights.pretrain")


def _load(
    data: DataSpec | PretrainSpec, train_per_class, val_per_class, seed: int, source: str, field: str
) -> TaskData:
    try:
        if isinstance(data.dataset, ImageFolderSource):
            classes = [str(c) for c in data.classes] if data.classes else None
            return load_imagefolder_task(
                data.dataset.imagefolder,
                classes=classes,
                val_fraction=data.dataset.val_fraction,
                train_per_class=train_per_class,
                seed=seed,
            )
        default = DEFAULT_DIGITS_SOURCE if isinstance(data, PretrainSpec) else DEFAULT_DIGITS_TARGET
        classes = data.classes or default
        return load_digits_task(classes, train_per_class=train_per_class, val_per_class=val_per_class, seed=seed)
    except DataError as exc:
        where = "dataset.imagefolder" if isinstance(data.dataset, ImageFolderSource) else "dataset"
        raise SpecError(source, f"{field}.{where}", str(exc)) from None
