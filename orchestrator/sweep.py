"""The sweep commands: run (or resume) a sweep, replay it into MLflow, report on it, check its
record, and rank backbones. Each is a library function the CLI calls.

A sweep's life: check every input (nothing written yet), lock the experiment, record the sweep
as current, open its MLflow parent run, pretrain source weights, run Ray Tune (new, or restored
from the driver's signed state), then record every trial in MLflow and Optuna, register the best
model, build the report, and check the record's invariants (`orchestrator.check`).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import ray
import torch
from ray import tune

from orchestrator import faults
from orchestrator.check import Audit, check_record
from orchestrator.credentials import credentials_file_problem, withhold_credentials
from orchestrator.datasets import source_task, target_task
from orchestrator.environ import temporary_environ
from orchestrator.errors import SpecError, UserError
from orchestrator.ledger import Manifest, read_state
from orchestrator.lock import LOCK_FILE, DriverLock
from orchestrator.pretrained import external_weights, source_weight_refs
from orchestrator.rank import RankReport, data_fingerprint, log_rank_run, prescreen, rank_backbones
from orchestrator.recording import RecordedTrial, pick_best, record_trials
from orchestrator.registry import register_best
from orchestrator.report import Report, make_report
from orchestrator.search import open_study_storage
from orchestrator.spec import SweepSpec, load_spec
from orchestrator.spec_yaml import spec_text_for_logging
from orchestrator.storage import Storage, is_remote_cluster, redact
from orchestrator.sweep_state import (
    FINISHED,
    INTERRUPTED,
    RUNNING,
    SweepRecord,
    current_sweep,
    read_record,
    write_record,
)
from orchestrator.tracking import SweepRuns, check_reachable, default_tracking_uri
from orchestrator.tuner import build_tuner
from trainables import finetune
from trainables.data import TaskData
from trainables.feature_cache import release_shared_features
from trainables.finetune import evaluate_split, load_checkpoint_model
from trainables.models import ImageClassifier
from trainables.transforms import data_config

EXIT_INTERRUPTED = 130


class SweepInterrupted(UserError):
    """The sweep stopped before every trial ended (Ctrl-C, SIGTERM); running it again resumes it."""

    exit_code = EXIT_INTERRUPTED


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
    audit: Audit | None = None  # the record's invariants, checked after the sweep


@dataclass
class _Sweep:
    """What the commands share about one sweep of one spec."""

    spec: SweepSpec
    source: str
    storage: Storage
    record: SweepRecord
    runs: SweepRuns
    study_location: str

    @property
    def sweep_id(self) -> str:
        return self.record.sweep_id


def run_sweep(
    spec_path: str | Path,
    *,
    address: str | None = None,
    trials: int | None = None,
    max_epochs: int | None = None,
    fresh: bool = False,
    trainable: Callable | None = None,
    replay: bool = True,
) -> SweepSummary:
    """Run the spec's sweep, or resume its current one. For tests of the record-keeping:
    `trainable` replaces the fine-tuning trial (no data, no model registered, no report), and
    `replay=False` skips the end-of-sweep replay, so the record is what live logging wrote."""
    started = time.time()
    overrides: dict[str, dict[str, Any]] = {}
    if trials is not None:
        overrides["search"] = {"trials": trials}
    if max_epochs is not None:
        overrides["early_stopping"] = {"max_epochs": max_epochs}
    spec = load_spec(spec_path, overrides)
    source = str(spec_path)
    spec_text = spec_text_for_logging(spec_path)
    target, external, pretrain_data = _load_inputs(spec, spec_path) if trainable is None else (None, {}, None)
    address = address or os.environ.get("RAY_ADDRESS")
    storage = _open_storage(spec, source, address)
    tracking_uri = _tracking_uri(spec)
    check_reachable(tracking_uri)  # an unreachable store fails here, before anything is written

    with _experiment_lock(storage, spec.experiment, "sweep") as lock:
        record, resumed = current_sweep(storage, spec.experiment, spec.spec_hash(), source, fresh)
        if lock.takeover_note():
            print(lock.takeover_note(), flush=True)
        sweep = _open_sweep(spec, source, storage, record, tracking_uri)
        try:
            record.status = RUNNING
            write_record(storage, spec.experiment, record)
            faults.reach("start")
            sweep.runs.start_parent(spec_text=spec_text, spec_hash=spec.spec_hash(), tags=_parent_tags(sweep))
            faults.reach("parent-run")
            _init_ray(address)
            if trainable is None:
                weights = source_weight_refs(
                    spec, storage, cpus=spec.resources.cpu, loaded=external, source_data=pretrain_data
                )
                if spec.search.prescreen is not None:
                    # Only the search space shrinks: the spec hash stays the written spec's, and the kept
                    # list is stored on the parent run, so a resumed sweep searches the same backbones.
                    spec = sweep.spec = prescreen(spec, sweep.runs, target, weights)
                    weights = {backbone: weights[backbone] for backbone in spec.backbones}
                trainable = tune.with_parameters(
                    finetune, task=target, image_size=spec.data.image_size, source_weights=weights
                )
            trainable = tune.with_resources(trainable, {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})
            state = read_state(storage, spec.experiment, sweep.sweep_id)
            if state is not None:
                print(f"Resuming sweep {sweep.sweep_id} from {storage.display(spec.experiment, sweep.sweep_id)}")
            tuner = build_tuner(
                spec,
                trainable,
                runs=sweep.runs,
                storage=storage,
                sweep_id=sweep.sweep_id,
                study_location=sweep.study_location,
                state=state,
            )
            faults.reach("tuner")
            # ResultLog writes result.json; Ray's own loggers would add a progress.csv that loses lines when
            # a trial restarts. Ray reads the switch as `fit` starts; other Tuners keep their loggers.
            with temporary_environ(TUNE_DISABLE_AUTO_CALLBACK_LOGGERS="1"), _sigterm_stops_gracefully():
                tuner.fit()
            release_shared_features()  # the trials' shared frozen features; a detached actor would outlive it
            state = read_state(storage, spec.experiment, sweep.sweep_id)
            manifest = state.manifest if state is not None else Manifest(requested=spec.search.trials)
            if manifest.complete:
                print("All trials done; recording them in MLflow and registering the best model", flush=True)
            return _finish_or_explain(sweep, manifest, target, started=started, resumed=resumed, replay=replay)
        except KeyboardInterrupt:
            _mark_interrupted(sweep)
            raise


def sync_sweep(spec_path: str | Path) -> SweepSummary:
    """Replay the current sweep's Ray records into MLflow and Optuna, without running anything.

    Idempotent: epochs already logged are skipped, runs are found by tag, and the best model
    is registered only once. `run_sweep` ends with the same pass."""
    started = time.time()
    spec = load_spec(spec_path)
    source = str(spec_path)
    storage = _open_storage(spec, source, address=None)
    tracking_uri = _tracking_uri(spec)
    check_reachable(tracking_uri)
    with _experiment_lock(storage, spec.experiment, "sync"):
        record = _existing_sweep(spec, storage, source, "sync")
        sweep = _open_sweep(spec, source, storage, record, tracking_uri)
        state = read_state(storage, spec.experiment, record.sweep_id)
        if state is None:
            raise UserError(
                f"sweep {record.sweep_id} never reached Ray's first snapshot, so it has nothing to sync; "
                "run `orchestrator sweep SPEC` to start it"
            )
        sweep.runs.start_parent(spec_text=spec_text_for_logging(spec_path), spec_hash=spec.spec_hash(), tags={})
        return _finish_or_explain(sweep, state.manifest, target_task(spec, source), started=started, resumed=True)


def report_sweep(spec_path: str | Path) -> Report:
    """`orchestrator report`: rebuild the current sweep's report from MLflow and the Optuna study,
    and log it to the sweep's parent run again."""
    spec = load_spec(spec_path, local_files=False)
    storage = Storage(spec.storage)  # only read, so nothing is created where there is no sweep
    record = _existing_sweep(spec, storage, str(spec_path), "report on")
    sweep = _open_sweep(spec, str(spec_path), storage, record, _tracking_uri(spec))
    check_reachable(sweep.runs.tracking_uri)
    return make_report(spec, sweep.runs, sweep.study_location)


def check_sweep(spec_path: str | Path) -> Audit:
    """`orchestrator check`: the current sweep's record against its invariants (reads only)."""
    spec = load_spec(spec_path, local_files=False)
    storage = Storage(spec.storage)
    _existing_sweep(spec, storage, str(spec_path), "check")
    tracking_uri = _tracking_uri(spec)
    check_reachable(tracking_uri)
    return _audit(spec, storage, tracking_uri)


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
    tracking_uri = _tracking_uri(spec)
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


# -- the end of a sweep -------------------------------------------------------------------


def _finish_or_explain(sweep: _Sweep, manifest: Manifest, target, **kwargs) -> SweepSummary:
    """`_finish`, turning an MLflow outage at the end of a finished sweep into one clear line."""
    try:
        return _finish(sweep, manifest, target, **kwargs)
    except (UserError, KeyboardInterrupt):
        raise
    except Exception:
        check_reachable(
            sweep.runs.tracking_uri,
            after="The sweep's results are safe in Ray's storage; run `orchestrator sync SPEC` once MLflow is back.",
        )
        raise


def _finish(
    sweep: _Sweep, manifest: Manifest, target: TaskData | None, *, started, resumed, replay: bool = True
) -> SweepSummary:
    """Make MLflow and Optuna agree with Ray's records, register the best model, report, and check."""
    spec, runs = sweep.spec, sweep.runs
    study = optuna.load_study(study_name=sweep.sweep_id, storage=open_study_storage(sweep.study_location))
    recorded = record_trials(runs, sweep.storage, sweep.sweep_id, manifest, study, replay=replay)
    summary = SweepSummary(
        experiment=spec.experiment,
        sweep_id=sweep.sweep_id,
        resumed=resumed,
        wall_time_s=0.0,
        outcomes=recorded.outcomes,
        parent_run_id=runs.parent_run_id,
        tracking_uri=runs.tracking_uri,
        optuna_storage=redact(sweep.study_location),
        ray_path=sweep.storage.display(spec.experiment, sweep.sweep_id),
        registered_model=spec.mlflow.register_best_as,
    )
    if not manifest.complete:
        _mark_interrupted(sweep)
        raise SweepInterrupted(
            f"sweep {sweep.sweep_id} stopped with {len(manifest.ended)} of {manifest.requested} trials done; "
            "run the same command again to resume it"
        )
    best = pick_best(recorded.trials, spec.objective.mode)
    if best is not None:
        _describe_best(summary, best)
        if target is not None:
            _register_best(sweep, best, target, summary)
    if target is not None:
        summary.report = _report_or_warn(sweep, summary.best_run_id)
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
            f"best_trial.final_{spec.objective.metric}": summary.best_metrics.get(spec.objective.metric, float("nan")),
            "wall_time_s": summary.wall_time_s,
        },
    )
    faults.reach("finished")
    sweep.record.status = FINISHED
    write_record(sweep.storage, spec.experiment, sweep.record)
    summary.audit = _audit(spec, sweep.storage, runs.tracking_uri)
    return summary


def _describe_best(summary: SweepSummary, best: RecordedTrial) -> None:
    summary.best_trial_id, summary.best_run_id, summary.best_config = best.trial_id, best.run_id, best.config
    summary.best_metrics = {k: v for k, v in best.last.items() if k.startswith(("val_", "train_", "epoch"))}


def _register_best(sweep: _Sweep, best: RecordedTrial, target: TaskData, summary: SweepSummary) -> None:
    spec, runs = sweep.spec, sweep.runs
    parent = runs.client.get_run(runs.parent_run_id).data.tags
    if parent.get("best.run_id") == best.run_id and parent.get("best.model_uri"):
        summary.model_uri = parent["best.model_uri"]  # a resumed sweep that already registered it
        summary.model_version = parent.get("best.model_version") or None
        return
    with sweep.storage.local_copy(best.final_checkpoint) as directory:
        backbone = load_checkpoint_model(directory, best.config, target.num_classes)
    if target.test is not None:  # held-out test/ folder: evaluated once, for the chosen model only
        split = evaluate_split(backbone, target.test, spec.data.image_size)
        summary.test_metrics = {f"test_{k}": v for k, v in split.items()}
        runs.log_summary_metrics(best.run_id, summary.test_metrics)
        runs.log_summary_metrics(runs.parent_run_id, summary.test_metrics)
    model = ImageClassifier(backbone, target.class_names).eval()
    size = data_config(backbone, spec.data.image_size)["input_size"]
    metric = spec.objective.metric
    registered = register_best(
        runs.client,
        experiment_id=runs.experiment_id,
        run_id=best.run_id,
        model=model,
        input_example=torch.rand(2, *size).numpy(),
        class_names=list(target.class_names),
        name=spec.mlflow.register_best_as,
        description=(
            f"Best trial {best.trial_id} of sweep {sweep.sweep_id} (experiment {spec.experiment!r}): "
            f"{best.config.get('backbone')}, final {metric} {best.final:.4g} after {best.last_epoch} epochs. "
            f"Takes RGB images in [0, 1] of shape [N, 3, {size[1]}, {size[2]}]; returns logits over "
            f"{list(target.class_names)}."
        ),
        tags={
            metric: f"{best.final:.6g}",
            "backbone": str(best.config.get("backbone")),
            "input_size": f"{size[1]}x{size[2]}",
            "classes": ",".join(target.class_names),
            "sweep_id": sweep.sweep_id,
            "ray.trial_id": best.trial_id,
        },
    )
    summary.model_uri, summary.model_version = registered.model_uri, registered.version


def _report_or_warn(sweep: _Sweep, best_run_id: str | None) -> str:
    """The report's terminal summary; a report that cannot be built never fails a finished sweep."""
    try:
        return make_report(sweep.spec, sweep.runs, sweep.study_location, best_run_id=best_run_id).summary
    except Exception as exc:  # noqa: BLE001 - the sweep's results are recorded; only the report is missing
        reason = str(exc).splitlines()[0][:300] if str(exc) else ""
        print(
            f"warning: the sweep report could not be built ({type(exc).__name__}: {reason}); "
            "retry with `orchestrator report SPEC`",
            file=sys.stderr,
            flush=True,
        )
        return ""


def _audit(spec: SweepSpec, storage: Storage, tracking_uri: str) -> Audit:
    return check_record(
        storage=storage,
        experiment=spec.experiment,
        tracking_uri=tracking_uri,
        study_location=_study_location(spec, storage),
        metric=spec.objective.metric,
        mode=spec.objective.mode,
        max_epochs=spec.early_stopping.max_epochs,
        register_as=spec.mlflow.register_best_as,
    )


def _mark_interrupted(sweep: _Sweep) -> None:
    """Never recorded as finished: the parent run KILLED, sweep.json `interrupted`."""
    sweep.record.status = INTERRUPTED
    write_record(sweep.storage, sweep.spec.experiment, sweep.record)
    if sweep.runs.parent_run_id:
        sweep.runs.client.set_terminated(sweep.runs.parent_run_id, "KILLED")


# -- set-up ------------------------------------------------------------------------------


def _load_inputs(spec: SweepSpec, spec_path: str | Path) -> tuple[TaskData, dict, TaskData | None]:
    """Target data, hub/file weights and the pretraining data, loaded before anything is written,
    so a bad folder or file fails first."""
    source = str(spec_path)
    target, external = target_task(spec, source), external_weights(spec, source)
    return target, external, source_task(spec, source) if spec.weights.source == "pretrain" else None


def _open_sweep(spec: SweepSpec, source: str, storage: Storage, record: SweepRecord, tracking_uri: str) -> _Sweep:
    runs = SweepRuns(
        tracking_uri,
        spec.experiment,
        record.sweep_id,
        spec.early_stopping.max_epochs,
        spec.objective.metric,
        spec.objective.mode,
    )
    return _Sweep(spec, source, storage, record, runs, _study_location(spec, storage))


def _parent_tags(sweep: _Sweep) -> dict[str, str]:
    return {
        "ray.experiment_path": sweep.storage.display(sweep.spec.experiment, sweep.sweep_id),
        "optuna.storage": redact(sweep.study_location),
        "optuna.study": sweep.sweep_id,
    }


def _existing_sweep(spec: SweepSpec, storage: Storage, source: str, verb: str) -> SweepRecord:
    record = read_record(storage, spec.experiment)
    if record is None:
        raise SpecError(source, "experiment", f"no sweep of {spec.experiment!r} in {storage.display()} to {verb}")
    if record.spec_hash != spec.spec_hash():
        raise SpecError(source, "experiment", f"the current sweep of {spec.experiment!r} was run with a different spec")
    return record


@contextmanager
def _experiment_lock(storage: Storage, experiment: str, command: str) -> Iterator[DriverLock]:
    """One live driver per experiment (see orchestrator.lock)."""
    path = Path(storage.path(experiment, LOCK_FILE)) if storage.is_local else Path(f".{experiment}.{LOCK_FILE}")
    lock = DriverLock(path.resolve(), experiment).acquire(command)
    try:
        yield lock
    finally:
        lock.release()


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
    problem = storage.unwritable(spec.experiment)
    if problem:
        raise SpecError(source, "storage", f"cannot write to {storage.display(spec.experiment)}: {problem}")
    return storage


def _study_location(spec: SweepSpec, storage: Storage) -> str:
    """`search.study_storage`, or a journal file beside the Ray results when they are local and in
    the working directory otherwise (a journal cannot live on S3; set search.study_storage to a
    database to share the study across machines)."""
    location = spec.search.study_storage or (
        storage.path(spec.experiment, "optuna.journal") if storage.is_local else f"optuna-{spec.experiment}.journal"
    )
    return location if "://" in location else str(Path(location).resolve())


def _tracking_uri(spec: SweepSpec) -> str:
    """The MLflow store to use, with the environment's credentials kept for the server it names."""
    tracking_uri = default_tracking_uri(spec.mlflow.tracking_uri)
    problem = credentials_file_problem(tracking_uri)
    if problem:
        raise UserError(problem)
    warning = withhold_credentials(tracking_uri)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    # MLflow's default (7 retries, 120 s timeout) would stall Tune's event loop for minutes in an outage.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    return tracking_uri


@contextmanager
def _sigterm_stops_gracefully() -> Iterator[None]:
    """SIGTERM (a pod being evicted) stops the sweep as Ctrl-C does: Tune saves its state first."""
    previous = signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
