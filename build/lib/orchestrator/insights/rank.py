"""Zero-training backbone ranking: `orchestrator rank SPEC`, and `search.prescreen` in a sweep.

Each backbone gets the spec's source weights (the same object-store references trials get),
extracts frozen features of the target train split, and is scored with LogME, and with LEEP
when its source weights include a classifier. One Ray task per backbone, with a trial's
resources, so ranking runs where trials run (a GPU worker on a cluster).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import ray
import torch
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH
from ray.exceptions import RayTaskError

from orchestrator.errors import UserError
from orchestrator.insights.transferability import leep, logme
from orchestrator.spec import SweepSpec
from orchestrator.tracking import SweepRuns, experiment_id
from trainables.data import ImageSplit, TaskData, fingerprint
from trainables.features import extract_features

KIND_TAG = "orchestrator.kind"
KEPT_TAG = "prescreen.kept"  # on the sweep's parent run: the backbones a prescreen kept, as JSON


@dataclass(frozen=True)
class BackboneScore:
    backbone: str
    logme: float
    leep: float | None  # None: the source weights have no classifier (see leep_note)
    feature_dim: int
    seconds: float
    leep_note: str = ""


@dataclass
class RankReport:
    experiment: str
    scores: list[BackboneScore]  # best first
    train_images: int
    num_classes: int
    weights: str
    run_id: str
    tracking_uri: str
    wall_time_s: float


def rank_backbones(spec: SweepSpec, target: TaskData, weights: dict[str, ray.ObjectRef]) -> list[BackboneScore]:
    """Scores of every backbone in `spec.backbones` on `target.train`, best (highest LogME) first."""
    split = ray.put(target.train)
    cpus, gpus = spec.resources.cpu, spec.resources.gpu
    remote = ray.remote(num_cpus=cpus, num_gpus=gpus)(_score)
    refs = {b: remote.remote(b, weights[b], split, spec.data.image_size, max(1, int(cpus))) for b in spec.backbones}
    scores = []
    for backbone, ref in refs.items():
        try:
            scores.append(ray.get(ref))
        except RayTaskError as exc:  # e.g. a backbone that cannot take the spec's image size
            cause = str(exc.cause).splitlines()[0] if str(exc.cause) else type(exc.cause).__name__
            raise UserError(f"{backbone}: cannot extract features for ranking: {cause}") from None
    return sorted(scores, key=lambda s: (-s.logme, s.backbone))


def _score(backbone: str, state: dict, split: ImageSplit, image_size: int | None, threads: int) -> BackboneScore:
    started = time.perf_counter()
    torch.set_num_threads(threads)
    extracted = extract_features(backbone, state, split, image_size=image_size)
    note, value = "", None
    if extracted.source_logits is None:
        note = "the source weights have no classifier"
    else:
        value = leep(torch.softmax(torch.from_numpy(extracted.source_logits), dim=1).numpy(), split.labels)
    return BackboneScore(
        backbone=backbone,
        logme=logme(extracted.features, split.labels),
        leep=value,
        feature_dim=int(extracted.features.shape[1]),
        seconds=time.perf_counter() - started,
        leep_note=note,
    )


def score_metrics(scores: list[BackboneScore], prefix: str = "") -> dict[str, float]:
    """`<prefix>logme.<backbone>` for every backbone, `<prefix>leep.<backbone>` where LEEP is defined."""
    metrics = {f"{prefix}logme.{s.backbone}": s.logme for s in scores}
    metrics.update({f"{prefix}leep.{s.backbone}": s.leep for s in scores if s.leep is not None})
    return metrics


def data_fingerprint(spec: SweepSpec, target: TaskData) -> dict[str, str]:
    """What the scores were computed on, so rank runs of different data are not compared by mistake."""
    train = target.train
    dataset = spec.data.dataset
    return {
        "data.dataset": dataset if isinstance(dataset, str) else dataset.imagefolder,
        "data.classes": ",".join(target.class_names),
        "data.train_images": str(len(train)),
        "data.train_sha256": fingerprint(train)[:16],
        "data.image_size": str(spec.data.image_size),
        "data.seed": str(spec.search.seed),
        "weights.source": spec.weights.source,
    }


def log_rank_run(tracking_uri: str, experiment: str, scores: list[BackboneScore], params: dict[str, str]) -> str:
    """A standalone MLflow run named `rank` in the spec's experiment; returns its id."""
    client = MlflowClient(tracking_uri)
    run = client.create_run(experiment_id(client, experiment), run_name="rank", tags={KIND_TAG: "rank"})
    now = int(time.time() * 1000)
    client.log_batch(
        run.info.run_id,
        metrics=[Metric(k, v, now, 0) for k, v in score_metrics(scores).items()],
        params=[Param(k, v[:MAX_PARAM_VAL_LENGTH]) for k, v in params.items()],
        tags=[RunTag(f"leep.{s.backbone}.note", s.leep_note) for s in scores if s.leep_note],
    )
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def kept_backbones(spec: SweepSpec, scores: list[BackboneScore]) -> list[str]:
    """The `keep_top` best backbones, plus any a baseline names (baselines always run), in the
    order of the spec's choices."""
    keep = {s.backbone for s in scores[: spec.search.prescreen.keep_top]}
    keep |= {point["backbone"] for point in spec.search.baselines if "backbone" in point}
    return [b for b in spec.backbones if b in keep]


def prescreen(spec: SweepSpec, runs: SweepRuns, target: TaskData, weights: dict[str, ray.ObjectRef]) -> SweepSpec:
    """The spec with `space.backbone` cut to the kept choices.

    The choice is made once per sweep and stored on the parent run, so a resumed sweep searches
    the same space even if ranking would now come out differently."""
    client = runs.client
    stored = client.get_run(runs.parent_run_id).data.tags.get(KEPT_TAG)
    if stored is not None:
        kept = json.loads(stored)
        print(f"Prescreen: searching {', '.join(kept)} (kept when this sweep started)", flush=True)
    else:
        scores = rank_backbones(spec, target, weights)
        kept = kept_backbones(spec, scores)
        runs.log_summary_metrics(runs.parent_run_id, score_metrics(scores, prefix="rank."))
        client.set_tag(runs.parent_run_id, KEPT_TAG, json.dumps(kept))
        ranked = ", ".join(f"{s.backbone} {s.logme:.3f}" for s in scores)
        pruned = [b for b in spec.backbones if b not in kept]
        print(
            f"Prescreen: kept {', '.join(kept)} of {len(spec.backbones)} backbones, pruned {', '.join(pruned) or '-'} "
            f"(LogME, best first: {ranked})",
            flush=True,
        )
    backbone = spec.space["backbone"].model_copy(update={"choices": kept})
    return spec.model_copy(update={"space": {**spec.space, "backbone": backbone}})
