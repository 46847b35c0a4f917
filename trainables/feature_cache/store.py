"""Features shared between a sweep's trials through Ray's object store: one small named actor per driver.
(The batch sizes fitted to a GPU, trainables.batch_size, are kept in it too.)"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import ray
import torch

REGISTRY = "feature-cache"


NAMESPACE = "orchestrator"  # a named namespace: a detached actor in a driver's anonymous one is unreachable


def shared_tensor(array: np.ndarray) -> torch.Tensor:
    with warnings.catch_warnings():  # read-only shared memory; cached features are only ever read
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array)


@ray.remote(num_cpus=0)
class FeatureRegistry:
    """Per driver: cache key -> features in the object store. The actor owns the objects, so they
    outlive the trial that computed them."""

    def __init__(self):
        self._refs: dict[str, ray.ObjectRef] = {}
        self._hits = 0

    def lookup(self, key: str) -> list[ray.ObjectRef] | None:
        ref = self._refs.get(key)
        if ref is None:
            return None
        self._hits += 1
        return [ref]  # in a list, so Ray passes the reference rather than the features

    def store(self, key: str, features: np.ndarray) -> None:
        if key not in self._refs:  # two trials may race to compute the same features; keep the first
            self._refs[key] = ray.put(features)

    def stats(self) -> dict[str, int]:
        return {"entries": len(self._refs), "hits": self._hits}


def registry_name() -> tuple[str, str]:
    """One registry per driver: job ids are unique within a Ray cluster, and trials share their driver's."""
    return f"{REGISTRY}-{ray.get_runtime_context().get_job_id()}", NAMESPACE


def shared_registry():
    """This driver's registry, created by the first trial that needs it; None outside Ray."""
    if not ray.is_initialized():
        return None
    name, namespace = registry_name()
    # It must outlive the trial that creates it: detached, and outside the trial's placement group
    # (which Tune removes, with everything in it, when the trial ends). release_shared_features ends it.
    return FeatureRegistry.options(
        name=name, namespace=namespace, lifetime="detached", get_if_exists=True, scheduling_strategy="DEFAULT"
    ).remote()


def shared_stats() -> dict[str, int] | None:
    """Entries and hits of this driver's registry; None if no trial has created it."""
    if not ray.is_initialized():
        return None
    name, namespace = registry_name()
    try:
        return ray.get(ray.get_actor(name, namespace=namespace).stats.remote())
    except ValueError:
        return None


def release_shared_features() -> None:
    """Free this driver's shared features (when its sweep is over)."""
    if not ray.is_initialized():
        return
    name, namespace = registry_name()
    with contextlib.suppress(ValueError):
        ray.kill(ray.get_actor(name, namespace=namespace))
