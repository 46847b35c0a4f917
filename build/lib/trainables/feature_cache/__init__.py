"""Frozen-feature cache: run the frozen prefix of a model once, then train only what follows it.

While the first layer groups are frozen (the `frozen` schedule, the probe phase of `lp_ft`) and
the inputs are deterministic (no random augmentation, mixup or stochastic depth), the prefix maps
each image to the same features in every epoch, and in every trial that shares the backbone, the
prefix's weights, the data and the preprocessing. So the model is split at a layer-group boundary
into prefix(x) -> features and suffix(features) -> logits, the split is checked against the whole
model on real images, and those epochs train and evaluate the suffix on features computed once.
A model that cannot be split, or whose split fails the check, trains on images as before: the
cache may cost speed, never correctness.

Trials share features through Ray's object store: a small named actor per driver maps a key to an
object it owns, so the features outlive the trial that computed them and later trials with the
same key skip the prefix entirely. The object store rather than files under `storage`, because
the features are derived data of one sweep: trials on a node map them without a copy, other nodes
fetch them on demand (with S3 storage every trial would download them), and nothing is left
behind to go stale. Outside Ray the cache lasts one trial.
"""

from trainables.feature_cache.policy import CachedEpoch, FeatureCache, applies
from trainables.feature_cache.split import Split, split_model, verify
from trainables.feature_cache.store import release_shared_features, shared_stats

__all__ = [
    "CachedEpoch",
    "FeatureCache",
    "Split",
    "applies",
    "release_shared_features",
    "shared_stats",
    "split_model",
    "verify",
]
