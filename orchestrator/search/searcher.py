"""Optuna search with correct fidelity, several objectives and deployment budgets.

Ray's stock `OptunaSearch.on_trial_complete` tells Optuna that a trial ASHA stopped early is
COMPLETE with its low-epoch value; TPE then treats a 2-epoch accuracy as if it were the final
one. `FidelityOptunaSearch` tells such a trial PRUNED (its intermediate values, keyed by
epoch, stay in the study), only trials that reached `max_epochs` COMPLETE, and errored or
diverged trials FAIL. The result that stops or ends a trial reaches the study as its last
intermediate value, and each Optuna trial names its Ray trial and MLflow run.

With several objectives the study has one direction per objective and each epoch's values are
user attributes (see `study`). With budgets each trial's measured costs become Optuna
constraints before it is told, so the sampler learns which configs fit; a trial over budget
(outcome `infeasible`) is told PRUNED, with no value: it never trained.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

from orchestrator.outcomes import COMPLETED, DIVERGED, INFEASIBLE, finite, trial_outcome
from orchestrator.search.space import DefineByRun
from orchestrator.search.study import MLFLOW_RUN_ID, OPTUNA_STATE, RAY_TRIAL_ID, record_costs, record_epoch
from orchestrator.spec import SweepSpec
from trainables.budgets import COSTS, budget_key

logger = logging.getLogger(__name__)


class FidelityOptunaSearch(OptunaSearch):
    """Ray's OptunaSearch, made to record each trial as it really ended (see the module docstring)."""

    def __init__(
        self,
        *args: Any,
        max_epochs: int,
        epoch_attr: str = "epoch",
        points_to_evaluate: list[dict] | None = None,
        require_links: bool = False,
        budgets: dict[str, float] | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        metric = kwargs.get("metric")
        self._keys = tuple(metric) if isinstance(metric, list | tuple) else (metric,)  # the objectives, in order
        self._budgets = dict(budgets or {})  # reported cost metric -> its maximum
        if all(isinstance(key, str) for key in self._keys):  # optuna-dashboard's axes say "val_acc", not "Objective 0"
            with warnings.catch_warnings():  # experimental since Optuna 3.2, unchanged since
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self._ot_study.set_metric_names(list(self._keys))
        # Ray would enqueue the baselines again each time a driver builds the searcher on the same study.
        for point in points_to_evaluate or []:
            self._ot_study.enqueue_trial(point, skip_if_exists=True)
        self._points_to_evaluate = points_to_evaluate
        self._max_epochs = max_epochs
        self._epoch_attr = epoch_attr
        # Study trials handed out by a driver that died before Ray recorded them: looked up at the
        # first suggestion, so the sweep reuses them instead of leaving them RUNNING forever.
        self._unrecorded: list[optuna.trial.FrozenTrial] | None = None
        self._tells: dict[str, _Tell] = {}  # ended trials, told once a signed snapshot holds them
        # Optuna allows user attributes only while a trial runs: with MLflow logging, a trial is told
        # only once it names its MLflow run (late only if MLflow was down when it started).
        self._require_links = require_links

    # After a driver restart Ray restores this searcher from its last snapshot, while the Optuna
    # study lives on in its own storage. Outcomes reach the study only after the snapshot that holds
    # them is signed and written (`flush_tells`), so the study never knows of an ending that the
    # restored Ray does not; and a trial the study handed out after that snapshot is handed out again.

    def suggest(self, trial_id: str) -> dict | None:
        if trial_id not in self._ot_trials:
            orphan = self._unrecorded_trial()
            if orphan is not None:
                # Its parameters are already in the study, so the define-by-run space replays them.
                self._ot_trials[trial_id] = optuna.Trial(self._ot_study, orphan._trial_id)
        config = super().suggest(trial_id)
        if trial_id in self._ot_trials:
            self._ot_trials[trial_id].set_user_attr(RAY_TRIAL_ID, trial_id)
        return config

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        self._unrecorded = None  # looked up in the study at the next suggestion

    def _unrecorded_trial(self) -> optuna.trial.FrozenTrial | None:
        """A RUNNING study trial that no Ray trial owns: asked for by a driver that then died."""
        if self._unrecorded is None:  # once per restore, so suggestions stay one study query cheap
            owned = {trial._trial_id for trial in self._ot_trials.values()}
            running = self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            self._unrecorded = [trial for trial in running if trial._trial_id not in owned]
        return self._unrecorded.pop(0) if self._unrecorded else None

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        values = self._values(result)
        if values is not None and not result.get("infeasible"):
            # Keyed by epoch, not training_iteration, so a restored trial reports the same steps.
            record_epoch(self._ot_trials[trial_id], values, int(result[self._epoch_attr]))

    def _values(self, result: dict) -> tuple[float, ...] | None:
        """The result's objective values, if every one is a finite number."""
        values = [result.get(key) for key in self._keys]
        return tuple(float(v) for v in values) if all(finite(v) for v in values) else None

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Ray hands the result that stops or ends a trial only to this method, never to
        `on_trial_result`: it becomes the trial's last intermediate value before the trial is told."""
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        self._completed_trials.add(trial_id)
        result = result or {}
        outcome = trial_outcome(result, errored=error, max_epochs=self._max_epochs, metric=self._keys)
        values, epoch = self._values(result), result.get(self._epoch_attr)
        trained = outcome not in (DIVERGED, INFEASIBLE) and epoch is not None
        self._tells[trial_id] = _Tell(
            last=(int(epoch), values) if trained and values is not None else None,
            state=OPTUNA_STATE[outcome],
            values=values if outcome == COMPLETED else None,
            costs={key: float(result[key]) for key in COSTS.values() if finite(result.get(key))},
        )

    def flush_tells(self) -> None:
        """Tell Optuna how the ended trials ended (called once a snapshot holding them is saved)."""
        for trial_id, tell in list(self._tells.items()):
            trial = self._ot_trials[trial_id]
            if self._require_links and MLFLOW_RUN_ID not in self._user_attrs(trial):
                continue
            try:
                if tell.last is not None:
                    record_epoch(trial, tell.last[1], tell.last[0])
                record_costs(trial, tell.costs, self._budgets)
                values = tell.values if tell.values is None or len(self._keys) > 1 else tell.values[0]
                self._ot_study.tell(trial, values, state=tell.state)
            except UpdateFinishedTrialError:
                pass  # told before a driver restart
            except (ValueError, RuntimeError) as exc:
                logger.warning("could not tell Optuna about trial %s: %s", trial_id, exc)
            del self._tells[trial_id]

    def _user_attrs(self, trial: optuna.Trial) -> dict:
        return self._ot_study._storage.get_trial_user_attrs(trial._trial_id)

    # -- links between the stores ---------------------------------------------------------
    def optuna_number(self, trial_id: str) -> int | None:
        trial = self._ot_trials.get(trial_id)
        return trial.number if trial is not None else None

    def link_run(self, trial_id: str, run_id: str) -> None:
        """Name the trial's MLflow run on its Optuna trial (while the trial runs)."""
        trial = self._ot_trials.get(trial_id)
        if trial is not None and self._user_attrs(trial).get(MLFLOW_RUN_ID) != run_id:
            with contextlib.suppress(UpdateFinishedTrialError):
                trial.set_user_attr(MLFLOW_RUN_ID, run_id)


@dataclass(frozen=True)
class _Tell:
    last: tuple[int, tuple[float, ...]] | None  # (epoch, objective values) of the result that ended the trial
    state: TrialState
    values: tuple[float, ...] | None  # what a COMPLETE trial is told
    costs: dict[str, float]  # the costs it measured, by reported metric


def make_searcher(
    spec: SweepSpec,
    study_name: str,
    storage: optuna.storages.BaseStorage | None,
    *,
    require_links: bool = False,
    sampler: optuna.samplers.BaseSampler | None = None,
) -> FidelityOptunaSearch:
    """The sweep's searcher: its define-by-run space, sampler, study and baselines (a study in
    memory when `storage` is None, and `sampler` instead of the spec's, as the replay benchmarks use)."""
    run_keys = {"max_epochs": spec.early_stopping.max_epochs, "weights": spec.weights.source}
    if "seed" not in spec.space:
        run_keys["seed"] = spec.search.seed
    run_keys.update({budget_key(name): limit for name, limit in spec.budgets.items()})  # the trial checks them
    several = len(spec.objectives) > 1
    return FidelityOptunaSearch(
        space=DefineByRun(spec, run_keys),
        metric=list(spec.objective_keys) if several else spec.primary.key,
        mode=list(spec.objective_modes) if several else spec.primary.mode,
        budgets={COSTS[name]: limit for name, limit in spec.budgets.items()},
        points_to_evaluate=[dict(p) for p in spec.search.baselines] or None,
        sampler=sampler or make_sampler(spec),
        study_name=study_name,
        storage=storage,
        max_epochs=spec.early_stopping.max_epochs,
        require_links=require_links,
    )


def make_sampler(spec: SweepSpec) -> optuna.samplers.BaseSampler:
    seed = spec.search.seed
    if spec.search.algorithm == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.search.algorithm == "grid":
        grid = {name: list(p.choices) for name, p in spec.searched.items()}
        return optuna.samplers.GridSampler(grid, seed=seed)
    # group=True models conditional parameters jointly; constant_liar keeps parallel
    # suggestions from piling onto the same point while earlier trials are running.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # `group` is stable in practice
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True)
