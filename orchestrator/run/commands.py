"""The sweep commands: run (or resume) a sweep, replay it into MLflow, report on it, check its
record, and rank backbones. Each is a library function the CLI calls.

A sweep's life: check every input (nothing written yet), lock the experiment, record the sweep
as current, open its MLflow parent run, pretrain source weights, run Ray Tune (new, or restored
from the driver's signed state), then record every trial in MLflow and Optuna, register the best
model, build the report, and check the record's invariants (`orchestrator.run.audit`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray import tune

from orchestrator import faults
from orchestrator.environ import temporary_environ
from orchestrator.errors import SpecError, UserError
from orchestrator.insights import (
    RankReport,
    Report,
    data_fingerprint,
    log_rank_run,
    make_report,
    prescreen,
    rank_backbones,
)
from orchestrator.run.audit import Audit
from orchestrator.run.finish import SweepSummary, audit_sweep, finish_or_explain
from orchestrator.run.inputs import decoded_target, target_task
from orchestrator.run.pretrained import source_weight_refs
from orchestrator.run.session import (
    existing_sweep,
    experiment_lock,
    init_ray,
    load_inputs,
    mark_interrupted,
    open_storage,
    open_sweep,
    parent_tags,
    sigterm_stops_gracefully,
    tracking_store_uri,
)
from orchestrator.run.summaries import format_start, mlflow_links, report_address
from orchestrator.run.tuner import build_tuner
from orchestrator.spec import load_spec, spec_text_for_logging, within_static_budgets
from orchestrator.store import (
    RUNNING,
    Manifest,
    Storage,
    current_sweep,
    read_state,
    write_record,
)
from orchestrator.tracking import (
    check_reachable,
)
from trainables.feature_cache import release_shared_features
from trainables.finetune import finetune


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
    target, external, pretrain_data = load_inputs(spec, spec_path) if trainable is None else (None, {}, None)
    address = address or os.environ.get("RAY_ADDRESS")
    storage = open_storage(spec, source, address)
    tracking_uri = tracking_store_uri(spec)
    check_reachable(tracking_uri)  # an unreachable store fails here, before anything is written

    with experiment_lock(storage, spec.experiment, "sweep") as lock:
        record, resumed = current_sweep(storage, spec.experiment, spec.spec_hash(), source, fresh)
        if lock.takeover_note():
            print(lock.takeover_note(), flush=True)
        sweep = open_sweep(spec, source, storage, record, tracking_uri)
        try:
            record.status = RUNNING
            write_record(storage, spec.experiment, record)
            faults.reach("start")
            sweep.runs.start_parent(spec_text=spec_text, spec_hash=spec.spec_hash(), tags=parent_tags(sweep))
            faults.reach("parent-run")
            state = read_state(storage, spec.experiment, sweep.sweep_id)
            done = len(state.manifest.ended) if state is not None else 0
            runs = sweep.runs
            links = mlflow_links(runs.tracking_uri, runs.experiment_id, runs.parent_run_id)
            artifacts = runs.client.get_run(runs.parent_run_id).info.artifact_uri
            report = report_address(runs.tracking_uri, runs.experiment_id, runs.parent_run_id, artifacts)
            print(
                format_start(sweep.sweep_id, spec.experiment, resumed, done, spec.search.trials, links, report),
                flush=True,
            )
            init_ray(address)
            if trainable is None:
                # Backbones over a parameter or MAC budget never train: nothing is pretrained or ranked for them.
                usable = within_static_budgets(spec, target.num_classes)
                weights = source_weight_refs(
                    usable, storage, cpus=spec.resources.cpu, loaded=external, source_data=pretrain_data
                )
                if spec.search.prescreen is not None:
                    # Only the search space shrinks: the spec hash stays the written spec's, and the kept
                    # list is stored on the parent run, so a resumed sweep searches the same backbones.
                    spec = sweep.spec = prescreen(usable, sweep.runs, target, weights)
                    weights = {backbone: weights[backbone] for backbone in spec.backbones}
                trainable = tune.with_parameters(
                    finetune,
                    task=decoded_target(spec, target, source),  # into the object store; `target` keeps the paths
                    image_size=spec.data.image_size,
                    source_weights=weights,
                )
            trainable = tune.with_resources(trainable, {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})
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
            with temporary_environ(TUNE_DISABLE_AUTO_CALLBACK_LOGGERS="1"), sigterm_stops_gracefully():
                tuner.fit()
            release_shared_features()  # the trials' shared frozen features; a detached actor would outlive it
            state = read_state(storage, spec.experiment, sweep.sweep_id)
            manifest = state.manifest if state is not None else Manifest(requested=spec.search.trials)
            if manifest.complete:
                print("All trials done; recording them in MLflow and registering the best model", flush=True)
            return finish_or_explain(sweep, manifest, target, started=started, resumed=resumed, replay=replay)
        except KeyboardInterrupt:
            mark_interrupted(sweep)
            raise


def sync_sweep(spec_path: str | Path) -> SweepSummary:
    """Replay the current sweep's Ray records into MLflow and Optuna, without running anything.

    Idempotent: epochs already logged are skipped, runs are found by tag, and the best model
    is registered only once. `run_sweep` ends with the same pass."""
    started = time.time()
    spec = load_spec(spec_path)
    source = str(spec_path)
    storage = open_storage(spec, source, address=None)
    tracking_uri = tracking_store_uri(spec)
    check_reachable(tracking_uri)
    with experiment_lock(storage, spec.experiment, "sync"):
        record = existing_sweep(spec, storage, source, "sync")
        sweep = open_sweep(spec, source, storage, record, tracking_uri)
        state = read_state(storage, spec.experiment, record.sweep_id)
        if state is None:
            raise UserError(
                f"sweep {record.sweep_id} never reached Ray's first snapshot, so it has nothing to sync; "
                "run `orchestrator sweep SPEC` to start it"
            )
        sweep.runs.start_parent(spec_text=spec_text_for_logging(spec_path), spec_hash=spec.spec_hash(), tags={})
        return finish_or_explain(sweep, state.manifest, target_task(spec, source), started=started, resumed=True)


def report_sweep(spec_path: str | Path) -> Report:
    """`orchestrator report`: rebuild the current sweep's report from MLflow and the Optuna study,
    and log it to the sweep's parent run again."""
    spec = load_spec(spec_path, local_files=False)
    storage = Storage(spec.storage)  # only read, so nothing is created where there is no sweep
    record = existing_sweep(spec, storage, str(spec_path), "report on")
    sweep = open_sweep(spec, str(spec_path), storage, record, tracking_store_uri(spec))
    check_reachable(sweep.runs.tracking_uri)
    return make_report(spec, sweep.runs, sweep.study_location)


def check_sweep(spec_path: str | Path) -> Audit:
    """`orchestrator check`: the current sweep's record against its invariants (reads only)."""
    spec = load_spec(spec_path, local_files=False)
    storage = Storage(spec.storage)
    existing_sweep(spec, storage, str(spec_path), "check")
    tracking_uri = tracking_store_uri(spec)
    check_reachable(tracking_uri)
    return audit_sweep(spec, storage, tracking_uri)


def rank_spec(spec_path: str | Path, *, address: str | None = None) -> RankReport:
    """`orchestrator rank`: LogME (and LEEP) of every backbone on the target train split, from
    the same source weights a sweep would use, logged as a standalone MLflow run."""
    started = time.time()
    spec = load_spec(spec_path)
    if spec.weights.source == "none":
        raise SpecError(
            str(spec_path), "weights.source", "'none' is random initialisation: no pretrained features to rank"
        )
    target, external, source = load_inputs(spec, spec_path)
    address = address or os.environ.get("RAY_ADDRESS")
    storage = open_storage(spec, str(spec_path), address)  # the pretrained-weight cache is shared with sweeps
    tracking_uri = tracking_store_uri(spec)
    check_reachable(tracking_uri)

    init_ray(address)
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


# -- set-up ------------------------------------------------------------------------------
