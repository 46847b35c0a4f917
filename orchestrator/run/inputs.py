"""Builds the target and source tasks a spec names, turning data problems into one-line errors;
and decodes a target image folder once for a sweep, when it fits."""

from __future__ import annotations

import dataclasses

import ray

from orchestrator.errors import SpecError
from orchestrator.spec import (
    DEFAULT_DIGITS_SOURCE,
    DEFAULT_DIGITS_TARGET,
    DataSpec,
    ImageFolderSource,
    PretrainSpec,
    SweepSpec,
)
from trainables.data import DataError, ImageSplit, TaskData, load_digits_task, load_imagefolder_task
from trainables.decoded import decode, decoded_bytes, decoded_share, image_sizes, sweep_input


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


def decoded_target(spec: SweepSpec, target: TaskData, source: str) -> TaskData:
    """The target with its train and val images decoded once, at the largest input size of the
    sweep's backbones (trainables.decoded); as it is if it holds no image folder, or if the
    decoded pixels would take more than `decoded_share()` of the object store of Ray's smallest
    node (its trials then decode every epoch, as the one line printed says). Call with Ray running."""
    if target.train.paths is None:
        return target
    shorter, interpolation = sweep_input(spec.backbones, spec.data.image_size)
    splits = (target.train, target.val)
    need = sum(decoded_bytes(image_sizes(split.paths), shorter) for split in splits)
    share = decoded_share()
    allowed = int(share * _smallest_object_store())
    images = sum(len(split) for split in splits)
    if share <= 0:
        print("Image folder: decoding ahead is off (ORCHESTRATOR_DECODED_SHARE=0); trials decode every epoch")
        return target
    if need > allowed:
        print(
            f"Image folder: {images:,} images would take {_size(need)} decoded at {shorter} px, more "
            f"than the {_size(allowed)} allowed ({share:.0%} of the smallest node's Ray object store, "
            "ORCHESTRATOR_DECODED_SHARE); "
            "trials decode them every epoch instead",
            flush=True,
        )
        return target
    print(f"Image folder: decoding {images:,} images once, at {shorter} px ({_size(need)})", flush=True)
    try:
        train, val = (_decoded(split, shorter, interpolation) for split in splits)
    except DataError as exc:  # a file changed since the check
        raise SpecError(source, "data.dataset.imagefolder", str(exc)) from None
    return dataclasses.replace(target, train=train, val=val)


def _decoded(split: ImageSplit, shorter: int, interpolation: str) -> ImageSplit:
    return dataclasses.replace(split, decoded=decode(split.paths, shorter, interpolation))


def _smallest_object_store() -> float:
    """Bytes of object store on the smallest live node (each node that runs trials maps its own copy)."""
    sizes = [n["Resources"].get("object_store_memory", 0) for n in ray.nodes() if n.get("Alive")]
    return min(sizes) if sizes else 0.0


def _size(count: float) -> str:
    if count >= 2**30:
        return f"{count / 2**30:.1f} GiB"
    return f"{count / 2**20:.0f} MiB" if count >= 2**20 else f"{count / 2**10:.0f} KiB"
