"""MLflow on the driver: one parent run per sweep, one child run per trial.

Workers never talk to MLflow. `MLflowLiveLogger` (a Tune callback) opens a trial's child run
when the trial starts, logs its results as they arrive (batched), and closes the run with its
outcome and end time the moment the trial ends. The end-of-sweep pass replays Ray's own records
through the same `SweepRuns`, so MLflow ends up complete and correct even if live logging missed
something. Runs are found again by tag, never duplicated.
"""

from __future__ import annotations

import logging
import numbers
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus, RunTag, ViewType
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH
from ray.tune import Callback
from ray.tune.utils import flatten_dict

from orchestrator import faults
from orchestrator.environ import temporary_environ
from orchestrator.errors import UserError
from orchestrator.lock import file_lock
from orchestrator.outcomes import COMPLETED, PRUNED, finite, trial_outcome
from orchestrator.storage import redact, redact_in

logger = logging.getLogger(__name__)

ROLE, SWEEP_ID, TRIAL_ID, OUTCOME = "orchestrator.role", "orchestrator.sweep_id", "ray.trial_id", "outcome"
OPTUNA_TRIAL = "optuna.trial_number"
PARENT = "mlflow.parentRunId"
NODE_ID = "ray.node_id"
INTERRUPTED = "interrupted"  # outcome tag of a trial stopped with its sweep (it resumes with it)
# Keys Ray adds to every result; they are bookkeeping, not trial metrics.
RAY_KEYS = {
    "done",
    "training_iteration",
    "trial_id",
    "date",
    "timestamp",
    "time_this_iter_s",
    "time_total_s",
    "pid",
    "hostname",
    "node_ip",
    "time_since_restore",
    "iterations_since_restore",
    "checkpoint_dir_name",
    "should_checkpoint",
    "epoch",
    "diverged",
}


def default_tracking_uri(spec_uri: str | None) -> str:
    """Spec, then MLFLOW_TRACKING_URI, then an SQLite file in the working directory."""
    return spec_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path('mlflow.db').resolve()}"


def check_reachable(tracking_uri: str, after: str = "Nothing was started.") -> None:
    """Fail in seconds, not after MLflow's minutes of retries, if the store cannot be reached.

    A new SQLite store is created here, by one process at a time: two drivers creating the same
    file at once would each run MLflow's migrations and leave it half-built."""
    sqlite = tracking_uri.startswith("sqlite:///")
    lock = Path(tracking_uri.removeprefix("sqlite:///") + ".lock") if sqlite else None
    try:
        with temporary_environ(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="10"):
            if lock is not None:
                with file_lock(lock):
                    MlflowClient(tracking_uri).search_experiments(max_results=1)
            else:
                MlflowClient(tracking_uri).search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001 - any failure here means the store is unusable
        reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        reason = redact_in(reason, tracking_uri)  # MLflow's own message repeats the URL, credentials included
        raise UserError(
            f"MLflow tracking store {redact(tracking_uri)} is unreachable ({reason}); start it, or set "
            f"MLFLOW_TRACKING_URI / mlflow.tracking_uri. {after}"
        ) from None


def metrics_of(result: dict, step: int, timestamp_ms: int) -> list[Metric]:
    return [
        Metric(key, float(value), timestamp_ms, step)
        for key, value in result.items()
        if key not in RAY_KEYS
        and isinstance(value, numbers.Real)  # numpy's too: records read back by pandas hold them
        and not isinstance(value, bool)
        and finite(float(value))
    ]


def experiment_id(client: MlflowClient, name: str) -> str:
    """The experiment's id, creating it if needed (with artifacts beside a local SQLite store, not in ./mlruns)."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = Path("mlartifacts").resolve().as_uri() if client.tracking_uri.startswith("sqlite:") else None
    return client.create_experiment(name, artifact_location=location)


def run_status(outcome: str) -> str:
    return "FINISHED" if outcome in (COMPLETED, PRUNED) else "KILLED" if outcome == INTERRUPTED else "FAILED"


# Redacted tracking URI -> the URI with its credentials, for this driver process (see SweepRuns.__getstate__).
_CREDENTIALED_URIS: dict[str, str] = {}


@dataclass
class SweepRuns:
    """Finds or creates the sweep's MLflow runs and writes to them."""

    tracking_uri: str
    experiment: str
    sweep_id: str
    max_epochs: int
    metric: str
    mode: str = "max"
    parent_run_id: str | None = None
    experiment_id: str | None = None
    _children: dict[str, str] = field(default_factory=dict)
    _logged: dict[str, dict[int, float | None]] = field(default_factory=dict)  # trial -> epoch -> objective

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(self.tracking_uri)

    def __post_init__(self) -> None:
        _CREDENTIALED_URIS[redact(self.tracking_uri)] = self.tracking_uri
        # MLflow prints two links per finished run on a server: noise among the trial lines, and
        # the links repeat any credentials in the URI.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

    def __getstate__(self) -> dict:
        # Pickled into Tune's experiment state on `storage`: caches are rebuilt, and a password in
        # the URI (from MLFLOW_TRACKING_URI) stays out; the resuming driver knows it again.
        return {**self.__dict__, "_children": {}, "_logged": {}, "tracking_uri": redact(self.tracking_uri)}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.tracking_uri = _CREDENTIALED_URIS.get(self.tracking_uri, self.tracking_uri)

    # -- parent ---------------------------------------------------------------------------
    def start_parent(self, *, spec_text: str, spec_hash: str, tags: dict[str, str]) -> str:
        client = self.client
        self.experiment_id = experiment_id(client, self.experiment)
        found = client.search_runs(
            [self.experiment_id], f"tags.`{SWEEP_ID}` = '{self.sweep_id}' and tags.`{ROLE}` = 'sweep'", max_results=1
        )
        if found:
            self.parent_run_id = found[0].info.run_id
            client.update_run(self.parent_run_id, status="RUNNING")
            if tags:
                client.log_batch(self.parent_run_id, tags=[RunTag(k, v) for k, v in tags.items()])
            return self.parent_run_id
        run = client.create_run(
            self.experiment_id,
            run_name=self.sweep_id,
            tags={ROLE: "sweep", SWEEP_ID: self.sweep_id, "orchestrator.spec_hash": spec_hash, **tags},
        )
        self.parent_run_id = run.info.run_id
        client.log_text(self.parent_run_id, spec_text, "spec.yaml")
        return self.parent_run_id

    def finish_parent(self, tags: dict[str, str], metrics: dict[str, float], status: str = "FINISHED") -> None:
        client = self.client
        now = int(time.time() * 1000)
        client.log_batch(
            self.parent_run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items() if finite(v)],
            tags=[RunTag(k, str(v)) for k, v in tags.items()],
        )
        client.set_terminated(self.parent_run_id, status)

    # -- children -------------------------------------------------------------------------
    def find_child(self, trial_id: str) -> str | None:
        """The trial's child run id, if it has one (creating nothing)."""
        found = self.client.search_runs(
            [self.experiment_id],
            f"tags.`{TRIAL_ID}` = '{trial_id}' and tags.`{PARENT}` = '{self.parent_run_id}'",
            max_results=1,
        )
        return found[0].info.run_id if found else None

    def child(self, trial_id: str, trial_name: str, config: dict, optuna_number: int | None = None) -> str:
        """The child run for a trial, created on first sight with its params. A run someone deleted
        is restored rather than replaced, so the Optuna trial that names it still does."""
        if trial_id in self._children:
            return self._children[trial_id]
        client = self.client
        found = client.search_runs(
            [self.experiment_id],
            f"tags.`{TRIAL_ID}` = '{trial_id}' and tags.`{PARENT}` = '{self.parent_run_id}'",
            run_view_type=ViewType.ALL,
            max_results=1,
        )
        if found:
            run_id = found[0].info.run_id
            if found[0].info.lifecycle_stage == "deleted":
                client.restore_run(run_id)
            self._logged[trial_id] = {m.step: m.value for m in client.get_metric_history(run_id, self.metric)}
        else:
            tags = {PARENT: self.parent_run_id, ROLE: "trial", TRIAL_ID: trial_id, SWEEP_ID: self.sweep_id}
            if optuna_number is not None:
                tags[OPTUNA_TRIAL] = str(optuna_number)
            run_id = client.create_run(self.experiment_id, run_name=trial_name, tags=tags).info.run_id
            params = [Param(k, str(v)[:MAX_PARAM_VAL_LENGTH]) for k, v in flatten_dict(config, delimiter=".").items()]
            client.log_batch(run_id, params=params)
            self._logged[trial_id] = {}
        self._children[trial_id] = run_id
        return run_id

    def reopen(self, trial_id: str) -> None:
        """Mark a trial's run RUNNING again: the trial (re)started, e.g. in a resumed sweep."""
        run_id = self._children[trial_id]
        if self.client.get_run(run_id).info.status != "RUNNING":
            self.client.update_run(run_id, status="RUNNING")

    def log_epochs(self, trial_id: str, results: list[dict]) -> None:
        """Log per-epoch results (step=epoch), skipping epochs this run already has, wherever they fall."""
        run_id = self._children[trial_id]
        logged = self._logged.setdefault(trial_id, {})
        metrics: list[Metric] = []
        new: dict[int, float | None] = {}
        node = None
        for result in results:
            epoch = int(result.get("epoch", 0))
            node = result.get("node_id") or node
            if epoch not in logged and epoch not in new:
                stamp = int(result.get("timestamp", time.time()) * 1000)
                metrics += metrics_of(result, epoch, stamp)
                value = result.get(self.metric)
                new[epoch] = float(value) if finite(value) else None
        tags = [RunTag(NODE_ID, str(node))] if isinstance(node, str) else []  # the node of the latest epoch
        if metrics or tags:
            self.client.log_batch(run_id, metrics=metrics, tags=tags)  # MLflow splits it into its own batches
        logged.update(new)

    def objective(self, trial_id: str) -> dict[int, float | None]:
        """The objective per epoch as this run holds it (None where it was not a finite number)."""
        return self._logged.get(trial_id, {})

    def finish_child(
        self, trial_id: str, outcome: str, *, last_epoch: int, error: str = "", end_time_ms: int | None = None
    ) -> None:
        """Tag the run with how the trial ended and close it (at `end_time_ms`, else now)."""
        run_id = self._children[trial_id]
        tags = {OUTCOME: outcome, "stopped_at_epoch": str(last_epoch)}
        if error:
            tags["error"] = error[-4000:]
        scores = [v for v in self.objective(trial_id).values() if v is not None]
        best = (max if self.mode == "max" else min)(scores) if scores else None
        metrics = [Metric(f"best_{self.metric}", best, int(time.time() * 1000), 0)] if best is not None else []
        client = self.client
        client.log_batch(run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in tags.items()])
        run = client.get_run(run_id).info
        status = run_status(outcome)
        if run.status != status or (end_time_ms is not None and run.end_time != end_time_ms):
            client.set_terminated(run_id, status, end_time=end_time_ms)

    def log_summary_metrics(self, run_id: str, metrics: dict[str, float]) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])

    def remove_orphans(self, known_trial_ids: set[str]) -> int:
        """Soft-delete child runs of trials that Ray no longer knows.

        Ray snapshots its experiment state periodically, so a trial started just before the
        driver died may be missing after a restore; Ray then runs a new trial in its place.
        Deleting the orphan (MLflow keeps deleted runs restorable) leaves one run per trial.
        """
        runs = self.client.search_runs([self.experiment_id], f"tags.`{PARENT}` = '{self.parent_run_id}'")
        orphans = [run for run in runs if run.data.tags.get(TRIAL_ID) not in known_trial_ids]
        for run in orphans:
            if run.info.status == RunStatus.to_string(RunStatus.RUNNING):
                self.client.set_terminated(run.info.run_id, "KILLED")
            self.client.set_tag(run.info.run_id, OUTCOME, "orphaned")
            self.client.delete_run(run.info.run_id)
        return len(orphans)


class MLflowLiveLogger(Callback):
    """Logs each trial's results to its child run as they arrive, at most once a second per trial,
    and closes the run when the trial ends.

    MLflow being down never stops training: results and endings stay pending and are retried, and
    the end-of-sweep replay (`SweepRuns` fed from Ray's records) fills any gap. `links` (the
    searcher) gives each trial's Optuna number and learns its run id."""

    def __init__(self, runs: SweepRuns, links=None, flush_every_s: float = 1.0, retry_every_s: float = 30.0):
        self.runs = runs
        self.links = links
        self.flush_every_s = flush_every_s
        self.retry_every_s = retry_every_s  # while MLflow is failing
        self._failing = False
        self._pending: dict[str, list[dict]] = {}
        self._ending: dict[str, _Ending] = {}  # trials that ended, their runs not yet closed
        self._trials: dict[str, tuple[str, dict]] = {}  # trial id -> (name, config), for late run creation
        self._last_flush = 0.0
        self._warned = False

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_pending": {}, "_ending": {}, "_trials": {}, "_warned": False, "_failing": False}

    def on_trial_start(self, iteration, trials, trial, **info):
        self._trials[trial.trial_id] = (str(trial), dict(trial.config))
        self._ending.pop(trial.trial_id, None)
        self._guarded(self._open, trial.trial_id)

    on_trial_restore = on_trial_start

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._pending.setdefault(trial.trial_id, []).append(result)
        faults.reach("result")

    def on_step_end(self, iteration, trials, **info):
        wait = self.flush_every_s if not self._failing else self.retry_every_s
        if time.monotonic() - self._last_flush >= wait:
            self.flush()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._ended(trial, errored=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        error = ""
        if trial.error_file:
            try:
                error = Path(trial.error_file).read_text()  # the driver's own copy of the trial's error
            except OSError:
                pass
        self._ended(trial, errored=True, error=error)

    def _ended(self, trial, *, errored: bool, error: str = "") -> None:
        last = dict(trial.last_result or {})
        self._ending[trial.trial_id] = _Ending(last, errored=errored, error=error, at_ms=int(time.time() * 1000))
        self.flush(trial.trial_id)
        faults.reach("trial-end")

    def on_experiment_end(self, trials, **info):
        self.flush()

    def flush(self, trial_id: str | None = None) -> None:
        for tid in [trial_id] if trial_id else list(self._pending):
            results = self._pending.get(tid)
            if results and self._guarded(self._log, tid, results):
                del self._pending[tid]
        for tid in [trial_id] if trial_id else list(self._ending):
            if tid in self._ending and not self._pending.get(tid) and self._guarded(self._close, tid):
                del self._ending[tid]
        self._last_flush = time.monotonic()

    def _run(self, trial_id: str) -> str:
        name, config = self._trials.get(trial_id, (f"finetune_{trial_id}", {}))
        number = self.links.optuna_number(trial_id) if self.links is not None else None
        return self.runs.child(trial_id, name, config, optuna_number=number)

    def _open(self, trial_id: str) -> None:
        run_id = self._run(trial_id)
        self.runs.reopen(trial_id)
        if self.links is not None:
            self.links.link_run(trial_id, run_id)

    def _log(self, trial_id: str, results: list[dict]) -> None:
        self._run(trial_id)
        self.runs.log_epochs(trial_id, results)

    def _close(self, trial_id: str) -> None:
        self._run(trial_id)
        ending = self._ending[trial_id]
        runs = self.runs
        outcome = trial_outcome(ending.last, errored=ending.errored, max_epochs=runs.max_epochs, metric=runs.metric)
        last_epoch = int(ending.last.get("epoch", 0))
        runs.finish_child(trial_id, outcome, last_epoch=last_epoch, error=ending.error, end_time_ms=ending.at_ms)

    def _guarded(self, call, *args) -> bool:
        try:
            call(*args)
            self._failing = False
            return True
        except Exception as exc:  # noqa: BLE001 - any MLflow failure: keep training, replay later
            self._failing = True
            if not self._warned:
                logger.warning(
                    "MLflow is unavailable (%s); training goes on and results are replayed "
                    "into MLflow when the sweep ends (or by `orchestrator sync`)",
                    redact_in(str(exc), self.runs.tracking_uri)[:200],
                )
                self._warned = True
            return False


@dataclass(frozen=True)
class _Ending:
    last: dict  # the trial's last result
    errored: bool
    error: str
    at_ms: int


def log_best_model(
    runs: SweepRuns, run_id: str, model, *, name: str | None, input_example, class_names: list[str]
) -> tuple[str, str | None]:
    """Log the best model as an MLflow PyTorch model in the best child run; register it if asked.

    MLflow saves it with torch.export (no pickle), so loading needs neither this package nor
    trust in the file; `metadata["class_names"][i]` is the label of output logit i.

    Returns (model_uri, registered version or None).
    """
    mlflow.set_tracking_uri(runs.tracking_uri)
    client = runs.client
    status = client.get_run(run_id).info
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pytorch.log_model(
            model,
            name="model",
            registered_model_name=name,
            input_example=input_example,
            metadata={"class_names": class_names},
            serialization_format="pt2",  # torch.export: loading runs no pickle
        )
    client.set_terminated(run_id, status.status, end_time=status.end_time)  # start_run reopened it
    version = str(info.registered_model_version) if name and info.registered_model_version else None
    return info.model_uri, version
