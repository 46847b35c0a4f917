"""MLflow on the driver: one parent run per sweep, one child run per trial.

Workers never talk to MLflow. `MLflowLiveLogger` (a Tune callback) opens a trial's child run
when the trial starts, logs its results as they arrive (batched), and closes the run with its
outcome and end time the moment the trial ends. The end-of-sweep pass replays Ray's own records
through the same `SweepRuns`, so MLflow ends up complete and correct even if live logging missed
something. Runs are found again by tag, never duplicated.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus, RunTag, ViewType
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_TAG_VAL_LENGTH
from ray.tune.utils import flatten_dict

from orchestrator.outcomes import finite
from orchestrator.tracking.schema import (
    NODE_ID,
    OPTUNA_TRIAL,
    OUTCOME,
    PARENT,
    PARETO,
    PARETO_TRIALS,
    ROLE,
    SWEEP_ID,
    TRIAL_ID,
    metrics_of,
    run_status,
)
from orchestrator.tracking.store import experiment_id, parent_runs
from orchestrator.uris import redact

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Known:
    """A child run as MLflow's search returned it."""

    run_id: str
    status: str
    end_time: int | None
    deleted: bool
    params: frozenset[str]

    @classmethod
    def of(cls, run) -> _Known:
        info = run.info
        return cls(
            info.run_id, info.status, info.end_time, info.lifecycle_stage == "deleted", frozenset(run.data.params)
        )


SAME_MOMENT_MS = 1_000  # one trial's end as two callbacks timed it

# Redacted tracking URI -> the URI with its credentials, for this driver process (see SweepRuns.__getstate__).
_CREDENTIALED_URIS: dict[str, str] = {}


@dataclass
class SweepRuns:
    """Finds or creates the sweep's MLflow runs and writes to them."""

    tracking_uri: str
    experiment: str
    sweep_id: str
    max_epochs: int
    metric: str  # the (first) objective
    mode: str = "max"
    parent_run_id: str | None = None
    others: tuple[str, ...] = ()  # the further objectives of a sweep with several
    experiment_id: str | None = None
    _children: dict[str, str] = field(default_factory=dict)
    _logged: dict[str, dict[int, float | None]] = field(default_factory=dict)  # trial -> epoch -> objective
    _index: dict[str, _Known] | None = None  # the parent's children, read once
    _params: dict[str, list[Param]] = field(default_factory=dict)  # not yet logged, by trial
    _status: dict[str, tuple[str, int | None]] = field(default_factory=dict)  # (status, end time) as last written
    _closed: dict[str, tuple] = field(default_factory=dict)  # how this process last closed each run

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
        caches = {"_children": {}, "_logged": {}, "_index": None, "_params": {}, "_status": {}, "_closed": {}}
        return {**self.__dict__, **caches, "tracking_uri": redact(self.tracking_uri)}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.tracking_uri = _CREDENTIALED_URIS.get(self.tracking_uri, self.tracking_uri)

    # -- parent ---------------------------------------------------------------------------
    def start_parent(self, *, spec_text: str, spec_hash: str, tags: dict[str, str]) -> str:
        client = self.client
        self.experiment_id = experiment_id(client, self.experiment)
        found = parent_runs(client, self.experiment, self.sweep_id)
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
    # Calls per trial are what a sweep of a thousand short trials pays for on the driver's loop:
    # the children are listed once (not searched for trial by trial), the params travel with the
    # first metrics, a run's last results with its closing tags, and what a call already wrote in
    # this process is not read back or written again.

    def find_child(self, trial_id: str) -> str | None:
        """The trial's child run id, if it has one (creating nothing)."""
        known = self._children.get(trial_id) or self._known().get(trial_id)
        return None if known is None else known if isinstance(known, str) else known.run_id

    def child(self, trial_id: str, config: dict, optuna_number: int | None = None) -> str:
        """The child run for a trial, created on first sight with its params and named
        `<backbone>-<trial id>`. A run someone deleted is restored rather than replaced, so the
        Optuna trial that names it still does."""
        if trial_id in self._children:
            return self._children[trial_id]
        client = self.client
        params = {k: str(v)[:MAX_PARAM_VAL_LENGTH] for k, v in flatten_dict(config, delimiter=".").items()}
        found = self._known().get(trial_id)
        if found is not None:
            run_id = found.run_id
            if found.deleted:
                client.restore_run(run_id)
            self._logged[trial_id] = {m.step: m.value for m in client.get_metric_history(run_id, self.metric)}
            params = {k: v for k, v in params.items() if k not in found.params}
            self._status[trial_id] = (found.status, found.end_time)
        else:
            tags = {PARENT: self.parent_run_id, ROLE: "trial", TRIAL_ID: trial_id, SWEEP_ID: self.sweep_id}
            if optuna_number is not None:
                tags[OPTUNA_TRIAL] = str(optuna_number)
            name = f"{config.get('backbone', 'trial')}-{trial_id}"
            run_id = client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id
            self._logged[trial_id] = {}
            self._status[trial_id] = ("RUNNING", None)
        self._params[trial_id] = [Param(k, v) for k, v in params.items()]  # sent with the run's next batch
        self._children[trial_id] = run_id
        return run_id

    def _known(self) -> dict[str, _Known]:
        """The parent's children (deleted ones too) by trial id, as MLflow held them at first use."""
        if self._index is None:
            client, found, token = self.client, {}, None
            query = f"tags.`{PARENT}` = '{self.parent_run_id}'"
            while True:
                page = client.search_runs([self.experiment_id], query, run_view_type=ViewType.ALL, page_token=token)
                for run in page:
                    if run.data.tags.get(TRIAL_ID) is not None:
                        found[run.data.tags[TRIAL_ID]] = _Known.of(run)
                token = page.token
                if not token:
                    break
            self._index = found
        return self._index

    def reopen(self, trial_id: str) -> None:
        """Mark a trial's run RUNNING again: the trial (re)started, e.g. in a resumed sweep."""
        run_id = self._children[trial_id]
        if self._status.get(trial_id, ("", None))[0] != "RUNNING":
            self.client.update_run(run_id, status="RUNNING")
            self._status[trial_id] = ("RUNNING", None)
            self._closed.pop(trial_id, None)

    def log_epochs(self, trial_id: str, results: list[dict]) -> None:
        """Log per-epoch results (step=epoch), skipping epochs this run already has, wherever they fall."""
        metrics, tags, new = self._new_epochs(trial_id, results)
        self._send(trial_id, metrics, tags)
        self._logged.setdefault(trial_id, {}).update(new)

    def _new_epochs(self, trial_id: str, results: list[dict]) -> tuple[list[Metric], list[RunTag], dict]:
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
        tags = [RunTag(NODE_ID, str(node))] if isinstance(node, str) and new else []  # the node of the latest epoch
        return metrics, tags, new

    def _send(self, trial_id: str, metrics: list[Metric], tags: list[RunTag]) -> None:
        """One log_batch with the run's pending params (MLflow splits it into its own batches)."""
        params = self._params.get(trial_id, [])
        if metrics or tags or params:
            self.client.log_batch(self._children[trial_id], metrics=metrics, params=params, tags=tags)
        self._params.pop(trial_id, None)

    def objective(self, trial_id: str) -> dict[int, float | None]:
        """The objective per epoch as this run holds it (None where it was not a finite number)."""
        return self._logged.get(trial_id, {})

    def finish_child(
        self,
        trial_id: str,
        outcome: str,
        *,
        last_epoch: int,
        error: str = "",
        end_time_ms: int | None = None,
        results: list[dict] = (),
    ) -> None:
        """Log `results` not yet logged, tag the run with how the trial ended and close it (at
        `end_time_ms`, else now): one batch and one status change, or nothing if this process
        already closed it so."""
        run_id = self._children[trial_id]
        metrics, tags, new = self._new_epochs(trial_id, list(results))
        scores = [v for v in {**self.objective(trial_id), **new}.values() if v is not None]
        best = (max if self.mode == "max" else min)(scores) if scores else None
        closing = (outcome, last_epoch, error[-4000:], best)
        if not metrics and not self._params.get(trial_id) and self._same_closing(trial_id, closing, end_time_ms):
            return
        ending = {OUTCOME: outcome, "stopped_at_epoch": str(last_epoch), **({"error": error[-4000:]} if error else {})}
        tags += [RunTag(k, v) for k, v in ending.items()]
        if best is not None:
            metrics.append(Metric(f"best_{self.metric}", best, int(time.time() * 1000), 0))
        self._send(trial_id, metrics, tags)
        self._logged.setdefault(trial_id, {}).update(new)
        status, (known, ended) = run_status(outcome), self._status.get(trial_id, ("", None))
        if known != status or (end_time_ms is not None and ended != end_time_ms):
            self.client.set_terminated(run_id, status, end_time=end_time_ms)
            self._status[trial_id] = (status, end_time_ms)
        self._closed[trial_id] = closing

    def _same_closing(self, trial_id: str, closing: tuple, end_time_ms: int | None) -> bool:
        """Whether this process already closed the run so: the live logger and the replay see one
        trial end through two callbacks, a few milliseconds apart."""
        ended = self._status.get(trial_id, ("", None))[1]
        same_moment = end_time_ms is None or (ended is not None and abs(ended - end_time_ms) <= SAME_MOMENT_MS)
        return self._closed.get(trial_id) == closing and same_moment

    def mark_front(self, front: list[str], trial_ids: list[str]) -> None:
        """Tag each trial's run `pareto` true or false, and list the front's trials on the parent
        (`pareto.trial_ids`, cut with `...` past MLflow's tag length; `pareto.size` counts them)."""
        client, on = self.client, set(front)
        for trial_id in trial_ids:
            run_id = self._children.get(trial_id) or self.find_child(trial_id)
            if run_id is not None:
                client.set_tag(run_id, PARETO, str(trial_id in on).lower())
        listed = ",".join(front)
        if len(listed) > MAX_TAG_VAL_LENGTH:
            listed = listed[: MAX_TAG_VAL_LENGTH - 4].rsplit(",", 1)[0] + ",..."
        tags = [RunTag(PARETO_TRIALS, listed), RunTag(f"{PARETO}.size", str(len(front)))]
        client.log_batch(self.parent_run_id, tags=tags)

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
