"""`run_sweep`: spec → Ray Tune (Optuna + ASHA) → MLflow, with resume.

Layout under `storage`:
    <storage>/<experiment>/sweep.json     which sweep is current, and the hash of its spec
    <storage>/<experiment>/optuna.journal Optuna studies (one per sweep), for optuna-dashboard
    <storage>/<experiment>/<sweep_id>/    Ray Tune's experiment: trial results and checkpoints
    <storage>/pretrained/                 source weights, cached by content hash
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import ray
import torch
from ray import tune
from ray.tune.logger import TBXLoggerCallback

from orchestrator.datasets import source_task, target_task
from orchestrator.environ import temporary_environ
from orchestrator.errors import SpecError
from orchestrator.pretrained import external_weights, source_weight_refs
from orchestrator.progress import TrialLines
from orchestrator.rank import RankReport, data_fingerprint, log_rank_run, prescreen, rank_backbones
from orchestrator.records import TrialRecords, epoch_records
from orchestrator.report import Report, make_report
from orchestrator.resume import CheckpointRepair
from orchestrator.search import FidelityOptunaSearch, make_sampler, make_scheduler, open_study_storage
from orchestrator.space import DefineByRun
from orchestrator.spec import SweepSpec, load_spec
from orchestrator.storage import Storage, is_remote_cluster, redact
from orchestrator.tracking import (
    MLflowLiveLogger,
    SweepRuns,
    check_reachable,
    default_tracking_uri,
    log_best_model,
    trial_outcome,
)
from trainables import finetune
from trainables.data import TaskData
from trainables.feature_cache import release_shared_features
from trainables.finetune import evaluate_split, load_checkpoint_model
from trainables.models import ImageClassifier
from trainables.transforms import data_config

CHECKPOINTS_TO_KEEP = 2


@dataclass
class SweepSummary:
    experiment: str
    sweep_id: str
    resumed: bool
    wall_time_s: float
    outcomes: dict[str, int]
    best_trial_id: str | None = None
    best_config: dict[str, Any] = field(default_factory=dict)
    best_metrics: dict[str, float] = field(default_factory=dict)
    test_metrics: dict[str, float] = field(default_factory=dict)
    parent_run_id: str | None = None
    best_run_id: str | None = None
    model_uri: str | None = None
    registered_model: str | None = None
    model_version: str | None = None
    tracking_uri: str = ""
    optuna_storage: str = ""
    ray_path: str = ""
    report: str = ""  # the sweep report's terminal summary


def run_sweep(
    spec_path: str | Path,
    *,
    address: str | None = None,
    trials: int | None = None,
    max_epochs: int | None = None,
    fresh: bool = False,
) -> SweepSummary:
    started = time.time()
    overrides: dict[str, dict[str, Any]] = {}
    if trials is not None:
        overrides["search"] = {"trials": trials}
    if max_epochs is not None:
        overrides["early_stopping"] = {"max_epochs": max_epochs}
    spec = load_spec(spec_path, overrides)
    spec_text = Path(spec_path).read_text()

    target, external, source = _load_inputs(spec, spec_path)

    address = address or os.environ.get("RAY_ADDRESS")
    storage = _open_storage(spec, str(spec_path), address)
    sweep_id, resumed = _current_sweep(spec, storage, str(spec_path), fresh)
    optuna_url = _study_location(spec, storage)

    # MLflow first: an unreachable or misconfigured store fails here, before any compute.
    runs = _sweep_runs(spec, sweep_id)
    # MLflow's default (7 retries, 120 s timeout) would stall Tune's event loop for minutes in an outage.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    check_reachable(runs.tracking_uri)
    runs.start_parent(
        spec_text=spec_text,
        spec_hash=spec.spec_hash(),
        tags={
            "ray.experiment_path": storage.display(spec.experiment, sweep_id),
            "optuna.storage": redact(optuna_url),
            "optuna.study": sweep_id,
        },
    )
    _write_state(storage, spec.experiment, sweep_id, spec.spec_hash())

    _init_ray(address)
    weights = source_weight_refs(spec, storage, cpus=spec.resources.cpu, loaded=external, source_data=source)
    if spec.search.prescreen is not None:
        # Only the search space shrinks: the spec hash stays the written spec's, and the kept list
        # is stored on the parent run, so a resumed sweep searches the same backbones.
        spec = prescreen(spec, runs, target, weights)
        weights = {backbone: weights[backbone] for backbone in spec.backbones}

    trainable = tune.with_resources(
        tune.with_parameters(finetune, task=target, image_size=spec.data.image_size, source_weights=weights),
        {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu},
    )
    ray_path = storage.path(spec.experiment, sweep_id)
    if resumed and tune.Tuner.can_restore(ray_path, storage_filesystem=storage.ray_filesystem):
        print(f"Resuming sweep {sweep_id} from {storage.display(spec.experiment, sweep_id)}", flush=True)
        tuner = tune.Tuner.restore(
            ray_path,
            trainable,
            resume_unfinished=True,
            resume_errored=True,
            storage_filesystem=storage.ray_filesystem,
        )
    else:
        tuner = _new_tuner(spec, trainable, runs, storage, sweep_id, optuna_url)
    # TrialRecords writes result.json; Ray's own loggers would add a progress.csv that loses lines
    # when a trial restarts. Ray reads the switch as `fit` starts; other Tuners keep their loggers.
    with temporary_environ(TUNE_DISABLE_AUTO_CALLBACK_LOGGERS="1"):
        results = tuner.fit()
    release_shared_features()  # the trials' shared frozen features; a detached actor would outlive the sweep
    print("All trials done; recording them in MLflow and registering the best model", flush=True)

    return _finish_or_explain(
        spec,
        runs,
        results,
        target,
        started=started,
        resumed=resumed,
        sweep_id=sweep_id,
        optuna_url=optuna_url,
        storage=storage,
    )


def sync_sweep(spec_path: str | Path) -> SweepSummary:
    """Replay the current sweep's Ray records into MLflow, without running anything.

    Idempotent: epochs already logged are skipped, runs are found by tag, and the best model
    is registered only once. `run_sweep` ends with the same pass."""
    started = time.time()
    spec = load_spec(spec_path)
    storage = _open_storage(spec, str(spec_path), address=None)
    if not storage.exists(spec.experiment, "sweep.json"):
        raise SpecError(str(spec_path), "experiment", f"no sweep of {spec.experiment!r} in {storage.display()} to sync")
    sweep_id, _ = _current_sweep(spec, storage, str(spec_path), fresh=False)
    target = target_task(spec, str(spec_path))
    optuna_url = _study_location(spec, storage)
    runs = _sweep_runs(spec, sweep_id)
    runs.start_parent(spec_text=Path(spec_path).read_text(), spec_hash=spec.spec_hash(), tags={})
    analysis = tune.ExperimentAnalysis(
        storage.path(spec.experiment, sweep_id),
        storage_filesystem=storage.ray_filesystem,
        default_metric=spec.objective.metric,
        default_mode=spec.objective.mode,
    )
    return _finish_or_explain(
        spec,
        runs,
        tune.ResultGrid(analysis),
        target,
        started=started,
        resumed=True,
        sweep_id=sweep_id,
        optuna_url=optuna_url,
        storage=storage,
    )


def rank_spec(spec_path: str | Path, *, address: str | None = None) -> RankReport:
    """`orchestrator rank`: LogME (and LEEP) of every backbone on the target train split, from
    the same source weights a sweep would use, logged as a standalone MLflow run."""
    started = time.time()
    spec = load_spec(spec_path)
    if spec.weights.source == "none":
        raise SpecError(
            str(spec_path), "weights.source", "'none' is random initialisation: no pretrained features to rank"
        )
    target, external, source = _load_inputs(spec, spec_path)
    address = address or os.environ.get("RAY_ADDRESS")
    storage = _open_storage(spec, str(spec_path), address)  # the pretrained-weight cache is shared with sweeps
    tracking_uri = default_tracking_uri(spec.mlflow.tracking_uri)
    check_reachable(tracking_uri)

    _init_ray(address)
    weights = source_weight_refs(spec, storage, cpus=spec.resources.cpu, loaded=external, source_data=source)
    scores = rank_backbones(spec, target, weights)
    run_id = log_rank_run(tracking_uri, spec.experiment, scores, data_fingerprint(spec, target))
    return RankReport(
        experiment=spec.experiment,
        scores=scores,
        train_images=len(target.train),
        num_classes=target.num_classes,
        weights=spec.weights.source,
        run_id=run_id,
        tracking_uri=tracking_uri,
        wall_time_s=time.time() - started,
    )


def report_sweep(spec_path: str | Path) -> Report:
    """`orchestrator report`: rebuild the current sweep's report from MLflow and the Optuna study,
    and log it to the sweep's parent run again."""
    spec = load_spec(spec_path)
    storage = Storage(spec.storage)  # only read, so nothing is created where there is no sweep
    if not storage.exists(spec.experiment, "sweep.json"):
        raise SpecError(
            str(spec_path), "experiment", f"no sweep of {spec.experiment!r} in {storage.display()} to report on"
        )
    sweep_id, _ = _current_sweep(spec, storage, str(spec_path), fresh=False)
    runs = _sweep_runs(spec, sweep_id)
    check_reachable(runs.tracking_uri)
    return make_report(spec, runs, _study_location(spec, storage))


def _report_or_warn(spec: SweepSpec, runs: SweepRuns, optuna_url: str, best_run_id: str | None) -> str:
    """The report's terminal summary; a report that cannot be built never fails a finished sweep."""
    try:
        return make_report(spec, runs, optuna_url, best_run_id=best_run_id).summary
    except Exception as exc:  # noqa: BLE001 - the sweep's results are recorded; only the report is missing
        reason = str(exc).splitlines()[0][:300] if str(exc) else ""
        print(
            f"warning: the sweep report could not be built ({type(exc).__name__}: {reason}); "
            "retry with `orchestrator report SPEC`",
            file=sys.stderr,
            flush=True,
        )
        return ""


def _load_inputs(spec: SweepSpec, spec_path: str | Path) -> tuple[TaskData, dict, TaskData | None]:
    """Target data, hub/file weights and the pretraining data, loaded before anything is written,
    so a bad folder or file fails first."""
    source = str(spec_path)
    target, external = target_task(spec, source), external_weights(spec, source)
    return target, external, source_task(spec, source) if spec.weights.source == "pretrain" else None


def _sweep_runs(spec: SweepSpec, sweep_id: str) -> SweepRuns:
    return SweepRuns(
        default_tracking_uri(spec.mlflow.tracking_uri),
        spec.experiment,
        sweep_id,
        spec.early_stopping.max_epochs,
        spec.objective.metric,
    )


def _finish_or_explain(spec, runs, results, target, **kwargs) -> SweepSummary:
    """`_finish`, turning an MLflow outage at the end of a finished sweep into one clear line."""
    try:
        return _finish(spec, runs, results, target, **kwargs)
    except Exception:
        check_reachable(
            runs.tracking_uri,
            after="The sweep itself finished and its results are safe in Ray's "
            "storage; run `orchestrator sync SPEC` once MLflow is back.",
        )
        raise


def _finish(spec, runs, results, target, *, started, resumed, sweep_id, optuna_url, storage) -> SweepSummary:
    """Make MLflow and Optuna agree with Ray's records, register the best model, close the parent."""
    summary = SweepSummary(
        experiment=spec.experiment,
        sweep_id=sweep_id,
        resumed=resumed,
        wall_time_s=0.0,
        outcomes={},
        parent_run_id=runs.parent_run_id,
        tracking_uri=runs.tracking_uri,
        optuna_storage=redact(optuna_url),
        ray_path=storage.display(spec.experiment, sweep_id),
        registered_model=spec.mlflow.register_best_as,
    )
    best = _sync_to_mlflow(spec, runs, results, summary)
    _close_orphaned_study_trials(optuna_url, sweep_id)
    if best is not None:
        _log_best(spec, runs, best, target, summary)
    summary.report = _report_or_warn(spec, runs, optuna_url, summary.best_run_id)
    summary.wall_time_s = time.time() - started
    runs.finish_parent(
        tags={
            "best.trial_id": summary.best_trial_id or "",
            "best.run_id": summary.best_run_id or "",
            "best.model_uri": summary.model_uri or "",
            "best.model_version": summary.model_version or "",
            **{f"trials.{k}": str(v) for k, v in summary.outcomes.items()},
        },
        metrics={
            f"best_{spec.objective.metric}": summary.best_metrics.get(spec.objective.metric, float("nan")),
            "wall_time_s": summary.wall_time_s,
        },
    )
    return summary


def _open_storage(spec: SweepSpec, source: str, address: str | None) -> Storage:
    storage = Storage(spec.storage)
    if storage.is_local and is_remote_cluster(address):
        raise SpecError(
            source,
            "storage",
            (
                f"{spec.storage!r} is a local path, but the Ray cluster at {address} may run trials on other "
                "machines; use s3://bucket/prefix or a volume mounted at the same path on every node"
            ),
        )
    try:
        storage.check_writable(spec.experiment)
    except OSError as exc:
        raise SpecError(source, "storage", f"cannot write to {storage.display(spec.experiment)}: {exc}") from None
    return storage


def _study_location(spec: SweepSpec, storage: Storage) -> str:
    """`search.study_storage`, or a journal file beside the Ray results when they are local and in
    the working directory otherwise (a journal cannot live on S3; set search.study_storage to a
    database to share the study across machines)."""
    location = spec.search.study_storage or (
        storage.path(spec.experiment, "optuna.journal") if storage.is_local else f"optuna-{spec.experiment}.journal"
    )
    return location if "://" in location else str(Path(location).resolve())


def _current_sweep(spec: SweepSpec, storage: Storage, source: str, fresh: bool) -> tuple[str, bool]:
    if storage.exists(spec.experiment, "sweep.json") and not fresh:
        state = json.loads(storage.read_text(spec.experiment, "sweep.json"))
        if state["spec_hash"] != spec.spec_hash():
            raise SpecError(
                source,
                "experiment",
                (
                    f"experiment {spec.experiment!r} already has a sweep in {storage.display(spec.experiment)} with a "
                    "different spec; run with --fresh to start a new sweep, or change `experiment`"
                ),
            )
        return state["sweep_id"], True
    return time.strftime("sweep-%Y%m%d-%H%M%S"), False


def _write_state(storage: Storage, experiment: str, sweep_id: str, spec_hash: str) -> None:
    state = json.dumps({"sweep_id": sweep_id, "spec_hash": spec_hash}, indent=2)
    storage.write_text(state, experiment, "sweep.json")


def _init_ray(address: str | None) -> None:
    if ray.is_initialized():
        return
    # Checkpointing every epoch of short trials is intended; Ray would warn about it.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # our TrialLines callback reports progress instead
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ray.init(
        address=address,  # already resolved from --address or RAY_ADDRESS
        include_dashboard=False,
        logging_level="WARNING",
        runtime_env={"worker_process_setup_hook": "orchestrator.progress.quiet_worker_logs"},
    )


def _new_tuner(spec: SweepSpec, trainable, runs: SweepRuns, storage: Storage, sweep_id: str, optuna_url: str):
    run_keys = {"max_epochs": spec.early_stopping.max_epochs, "weights": spec.weights.source}
    if "seed" not in spec.space:
        run_keys["seed"] = spec.search.seed
    searcher = FidelityOptunaSearch(
        space=DefineByRun(spec, run_keys),
        metric=spec.objective.metric,
        mode=spec.objective.mode,
        points_to_evaluate=[dict(p) for p in spec.search.baselines] or None,
        sampler=make_sampler(spec),
        study_name=sweep_id,
        storage=open_study_storage(optuna_url),
        max_epochs=spec.early_stopping.max_epochs,
    )
    scheduler = make_scheduler(spec)
    if hasattr(scheduler, "set_search_properties"):
        scheduler.set_search_properties(spec.objective.metric, spec.objective.mode)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=spec.search.trials,
            max_concurrent_trials=spec.search.concurrent,
            trial_dirname_creator=_trial_dirname,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=sweep_id,
            storage_path=storage.path(spec.experiment),
            storage_filesystem=storage.ray_filesystem,
            callbacks=[
                CheckpointRepair(),
                TrialRecords(),  # result.json, kept whole across restarts; replaces Ray's JSON and CSV loggers
                TBXLoggerCallback(),
                MLflowLiveLogger(runs),
                TrialLines(
                    spec.search.trials, spec.objective.metric, spec.objective.mode, spec.early_stopping.max_epochs
                ),
            ],
            # Keep the newest checkpoints, not the best-scoring: Ray's experiment snapshot points at a
            # trial's latest checkpoint, and score-based retention can delete it before the next
            # snapshot, which breaks resuming after a driver crash.
            checkpoint_config=tune.CheckpointConfig(num_to_keep=CHECKPOINTS_TO_KEEP),
            failure_config=tune.FailureConfig(max_failures=spec.search.max_failures),
            verbose=0,
        ),
    )


def _trial_dirname(trial) -> str:
    return trial.trial_id  # so a result's directory name is its trial id


def _sync_to_mlflow(spec: SweepSpec, runs: SweepRuns, results, summary: SweepSummary):
    """Replay every trial's records from Ray into MLflow (idempotent), set outcomes, pick the best."""
    metric, sign = spec.objective.metric, (1 if spec.objective.mode == "max" else -1)
    best, best_score = None, None
    for result in results:
        trial_id = Path(result.path).name
        records = epoch_records(result)
        last = records[-1] if records else {}
        outcome = trial_outcome(last, errored=result.error is not None, max_epochs=spec.early_stopping.max_epochs)
        summary.outcomes[outcome] = summary.outcomes.get(outcome, 0) + 1
        scores = [r[metric] for r in records if isinstance(r.get(metric), int | float) and np.isfinite(r[metric])]
        trial_best = max(scores, key=lambda v: sign * v) if scores else None
        final = scores[-1] if scores else None
        runs.child(trial_id, f"finetune_{trial_id}", result.config or {})
        runs.log_epochs(trial_id, records)
        runs.finish_child(trial_id, outcome, last, trial_best, error=str(result.error or ""))
        # The best trial ran to max_epochs and is judged by its final value, as Optuna judges it.
        if outcome == "completed" and final is not None and (best_score is None or sign * final > sign * best_score):
            best, best_score = result, final
    runs.remove_orphans({Path(result.path).name for result in results})
    return best


def _close_orphaned_study_trials(study_storage: str, study_name: str) -> None:
    """Optuna trials still RUNNING once the sweep is over were asked for by a driver that died
    before Ray recorded them; nothing will ever finish them."""
    study = optuna.load_study(study_name=study_name, storage=open_study_storage(study_storage))
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(trial._trial_id, "orphaned", "driver restarted before Ray recorded it")
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)


def _log_best(spec: SweepSpec, runs: SweepRuns, best, target: TaskData, summary: SweepSummary) -> None:
    checkpoint, best_metrics = best.checkpoint, best.metrics  # the final epoch's
    summary.best_trial_id = Path(best.path).name
    summary.best_config = best.config
    summary.best_metrics = {k: v for k, v in best_metrics.items() if k.startswith(("val_", "train_", "epoch"))}
    summary.best_run_id = runs.child(summary.best_trial_id, "", {})

    parent = runs.client.get_run(runs.parent_run_id).data.tags
    if parent.get("best.run_id") == summary.best_run_id and parent.get("best.model_uri"):
        summary.model_uri = parent["best.model_uri"]  # a resumed sweep that already logged it
        summary.model_version = parent.get("best.model_version") or None
        return
    with checkpoint.as_directory() as directory:
        backbone = load_checkpoint_model(directory, best.config, target.num_classes)
    if target.test is not None:  # held-out test/ folder: evaluated once, for the chosen model only
        summary.test_metrics = {
            f"test_{k}": v for k, v in evaluate_split(backbone, target.test, spec.data.image_size).items()
        }
        runs.log_summary_metrics(summary.best_run_id, summary.test_metrics)
        runs.log_summary_metrics(runs.parent_run_id, summary.test_metrics)
    model = ImageClassifier(backbone, target.class_names).eval()
    size = data_config(backbone, spec.data.image_size)["input_size"]
    example = torch.rand(2, *size).numpy()
    summary.model_uri, summary.model_version = log_best_model(
        runs,
        summary.best_run_id,
        model,
        name=spec.mlflow.register_best_as,
        input_example=example,
        class_names=list(target.class_names),
    )
