"""Ray Tune's Tuner for a sweep: new, or restored from the driver's signed state.

Either way Ray works through `verified_fs`, so the only pickles it reads from storage are the
ones the driver signed. A restored Tuner gets the same freshly built searcher, scheduler and
callbacks as a new one (so `tuner.pkl` is this process's own bytes, never storage's), and Ray
then loads the trials' and the searcher's state from the signed snapshot.
"""

from __future__ import annotations

from collections.abc import Callable

import ray.cloudpickle as cloudpickle
from ray import tune
from ray.tune.logger import TBXLoggerCallback

from orchestrator.records import CheckpointRepair, ResultLog
from orchestrator.run.ledger import Ledger
from orchestrator.run.live_view import LiveView
from orchestrator.search import make_scheduler, make_searcher, open_study_storage
from orchestrator.spec import SweepSpec
from orchestrator.store import Manifest, Storage, SweepState, forget, verified_filesystem, vouch
from orchestrator.tracking import MLflowLiveLogger, SweepRuns
from trainables.checkpoints import CHECKPOINTS_TO_KEEP

TUNER_FILE = "tuner.pkl"


def build_tuner(
    spec: SweepSpec,
    trainable: Callable,
    *,
    runs: SweepRuns,
    storage: Storage,
    sweep_id: str,
    study_location: str,
    state: SweepState | None,
) -> tune.Tuner:
    searcher = make_searcher(spec, sweep_id, open_study_storage(study_location), require_links=True)
    manifest = state.manifest if state is not None else Manifest(requested=spec.search.trials)
    callbacks = [
        CheckpointRepair(),
        ResultLog(),  # result.json, kept whole across restarts; replaces Ray's JSON and CSV loggers
        TBXLoggerCallback(),
        MLflowLiveLogger(runs, links=searcher),
        Ledger(storage, spec.experiment, sweep_id, manifest, searcher),
        LiveView(
            spec.search.trials,
            spec.primary.key,
            spec.primary.mode,
            spec.early_stopping.max_epochs,
            already_ended=len(manifest.ended),
        ),
    ]
    root = storage.path(spec.experiment, sweep_id)
    tune_config = tune.TuneConfig(
        search_alg=searcher,
        scheduler=make_scheduler(spec),
        num_samples=spec.search.trials,
        max_concurrent_trials=spec.search.concurrent,
        trial_dirname_creator=_trial_dirname,
        reuse_actors=True,
    )

    forget(root)  # what this process vouched for in an earlier run of the sweep
    run_config = tune.RunConfig(
        name=sweep_id,
        storage_path=storage.path(spec.experiment),
        storage_filesystem=verified_filesystem(storage.fs, root),
        callbacks=callbacks,
        # Keep the newest checkpoints, not the best-scoring: Ray's experiment snapshot points at a
        # trial's latest checkpoint, and score-based retention can delete it before the next
        # snapshot, which breaks resuming after a driver crash. Ray also snapshots whenever a trial
        # has checkpointed this many times since the last snapshot: a count of epochs, not of
        # every other result (trainables/checkpoints.py says how many, and why).
        checkpoint_config=tune.CheckpointConfig(num_to_keep=CHECKPOINTS_TO_KEEP),
        failure_config=tune.FailureConfig(max_failures=spec.search.max_failures),
        verbose=0,
    )
    if state is None:
        # Nothing Ray left here is restorable without a signed snapshot (or trusted): start clean.
        if storage.exists(spec.experiment, sweep_id):
            storage.fs.delete_dir_contents(root)
        return tune.Tuner(trainable, tune_config=tune_config, run_config=run_config)
    fresh = tune.Tuner(trainable, tune_config=tune_config, run_config=run_config)
    own_state = cloudpickle.dumps(fresh._local_tuner.__getstate__())  # what Tuner.restore will unpickle
    vouch(root, {**state.ray_files, TUNER_FILE: own_state})
    return tune.Tuner.restore(
        root,
        trainable,
        resume_unfinished=True,
        resume_errored=False,  # an errored trial used up its retries; Optuna was told FAIL
        storage_filesystem=verified_filesystem(storage.fs, root),
    )


def _trial_dirname(trial) -> str:
    return trial.trial_id  # so a result's directory name is its trial id
