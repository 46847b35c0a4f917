"""Section 5: time per suggestion of the sweep's real searcher, around the 1,000th trial.

The searcher is built as `orchestrator.sweep` builds it for the demo spec
(`FidelityOptunaSearch` over `DefineByRun`, `make_sampler`'s TPE, the study in a journal file
on disk, the default `search.study_storage`).
The study is first filled with earlier trials, a third of them pruned after two epochs as
ASHA would: their parameters come from the same define-by-run space through a random
sampler, their values from a smooth synthetic objective. That takes seconds to a minute,
where asking TPE for each of them would take many minutes, and TPE's cost per suggestion
depends on how many trials it models, not on how they were chosen. Then suggestions are
timed with two trials in flight (as with `concurrent: 2`, so the constant liar sees running
trials). The same run against an SQLite study (`study_storage: sqlite:///...`, the default
before) and Optuna's in-memory storage separates the sampler's own time from the storage's.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

from benchmarks.curves import DEMO_SPEC
from benchmarks.report import Figure, Section
from orchestrator.search import DefineByRun, make_searcher, open_study_storage
from orchestrator.spec import load_spec

BACKBONE_SCORE = {"test_resnet": 0.85, "mobilenetv3_small_050": 0.7, "test_vit": 0.6, "test_convnext": 0.9}


def synthetic_val_acc(config: dict, epoch: int, max_epochs: int) -> float:
    """A smooth stand-in objective: depends on every searched parameter, rises with epochs."""
    lr_term = math.exp(-((math.log10(config.get("lr", 3e-3)) + 2.5) ** 2))
    k = config.get("transfer_layers", 0.5)
    score = BACKBONE_SCORE.get(config.get("backbone"), 0.5) * (0.6 + 0.3 * lr_term + 0.1 * (1 - (k - 0.4) ** 2))
    score -= 0.05 * config.get("dropout", 0.0) + 0.1 * config.get("label_smoothing", 0.0)
    return max(0.0, min(1.0, score * (1 - 0.5 * math.exp(-3 * epoch / max_epochs))))


def _history(spec, run_keys: dict, n: int, max_epochs: int, seed: int) -> list[optuna.trial.FrozenTrial]:
    space = DefineByRun(spec, run_keys)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=seed))
    for number in range(n):
        trial = study.ask()
        config = {**space(trial), **trial.params}
        stop = max_epochs if number % 3 else 2  # every third trial pruned at epoch 2
        for epoch in range(1, stop + 1):
            trial.report(synthetic_val_acc(config, epoch, max_epochs), epoch)
        if stop == max_epochs:
            study.tell(trial, synthetic_val_acc(config, max_epochs, max_epochs))
        else:
            study.tell(trial, state=TrialState.PRUNED)
    return study.trials


def measure(*, prior_trials: int, timed: int, storage: str = "journal", seed: int = 0) -> dict:
    """`storage="journal"`: a journal file on disk, as the sweep uses by default; "sqlite": an
    SQLite study on disk; "memory": Optuna's in-memory storage, the sampler's own cost."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = load_spec(DEMO_SPEC)
    max_epochs = spec.early_stopping.max_epochs
    run_keys = {"max_epochs": max_epochs, "weights": spec.weights.source, "seed": spec.search.seed}
    history = _history(spec, run_keys, prior_trials, max_epochs, seed)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        study_storage = _filled_storage(storage, Path(tmp), history)
        fill_s = time.perf_counter() - started
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            searcher = make_searcher(spec, "bench", study_storage)
        suggest_ms, complete_ms, in_flight = [], [], []
        for i in range(timed + 1):
            trial_id = f"t{i:05d}"
            t0 = time.perf_counter()
            config = searcher.suggest(trial_id)
            suggest_ms.append(1000 * (time.perf_counter() - t0))
            in_flight.append((trial_id, config))
            if len(in_flight) == 2:  # two trials run at once; the older one finishes
                done_id, done_config = in_flight.pop(0)
                t0 = time.perf_counter()
                for epoch in range(1, max_epochs + 1):
                    searcher.on_trial_result(
                        done_id, {"epoch": epoch, "val_acc": synthetic_val_acc(done_config, epoch, max_epochs)}
                    )
                final = {"epoch": max_epochs, "val_acc": synthetic_val_acc(done_config, max_epochs, max_epochs)}
                searcher.on_trial_complete(done_id, final)
                searcher.flush_tells()  # as the ledger does once a snapshot holds the ending
                complete_ms.append(1000 * (time.perf_counter() - t0))
        trials_in_study = len(searcher._ot_study.get_trials(deepcopy=False))
    return {
        "storage": storage,
        "prior_trials": prior_trials,
        "trials_in_study_at_end": trials_in_study,
        "fill_s": fill_s,
        "suggest_ms": suggest_ms[1:],  # the first also loads the study
        "report_and_complete_ms": complete_ms,
    }


def _filled_storage(kind: str, folder: Path, history: list) -> optuna.storages.BaseStorage:
    if kind == "memory":
        storage = optuna.storages.InMemoryStorage()
        optuna.create_study(study_name="bench", storage=storage, direction="maximize").add_trials(history)
        return storage
    if kind == "journal":
        journal = str(folder / "optuna.journal")
        optuna.create_study(study_name="bench", storage=open_study_storage(journal), direction="maximize").add_trials(
            history
        )
        return open_study_storage(journal)  # a fresh handle, as a new driver opens it
    # Filling an SQLite study commits once per trial (an fsync each on disk): fill it in memory-backed
    # /dev/shm where there is one, then time against a copy on disk, where the sweep keeps its study.
    fill_dir = Path(tempfile.mkdtemp(dir="/dev/shm")) if Path("/dev/shm").is_dir() else folder
    try:
        filling = optuna.storages.RDBStorage(f"sqlite:///{fill_dir / 'fill.db'}")
        optuna.create_study(study_name="bench", storage=filling, direction="maximize").add_trials(history)
        filling.engine.dispose()  # its connections closed before the file is copied
        shutil.copyfile(fill_dir / "fill.db", folder / "optuna.db")
    finally:
        if fill_dir != folder:
            shutil.rmtree(fill_dir, ignore_errors=True)
    return open_study_storage(f"sqlite:///{folder / 'optuna.db'}")


def run(profile) -> Section:
    n, timed = profile.searcher_prior_trials, profile.searcher_timed
    raw = {kind: measure(prior_trials=n, timed=timed, storage=kind) for kind in ("journal", "sqlite", "memory")}
    setting = (
        f"the demo's define-by-run space, TPE multivariate+group with constant liar, a study already holding {n} "
        "trials (1/3 pruned), 2 trials in flight"
    )
    # (storage, name suffix, goal, how): the journal is what a sweep uses, so the goal is on it
    suggestions = [
        (
            "journal",
            "",
            ("<", 50.0),
            f"`FidelityOptunaSearch.suggest` as the sweep builds it, study in a journal file on disk; {setting}",
        ),
        (
            "sqlite",
            ", SQLite study",
            None,
            "the same with `study_storage: sqlite:///...` (each suggestion re-reads the running trials)",
        ),
        ("memory", ", in-memory study", None, "the same with Optuna's in-memory storage: the sampler's own share"),
    ]
    figures = [
        Figure(
            "searcher",
            f"time per suggestion at trial ~{n}{suffix}",
            raw[kind]["suggest_ms"],
            unit="ms",
            goal=goal,
            over="suggestions",
            how=how,
        )
        for kind, suffix, goal, how in suggestions
    ]
    for kind, where in (("journal", "the journal file"), ("sqlite", "the SQLite study")):
        figures.append(
            Figure(
                "searcher",
                f"report 10 epochs + complete a trial at trial ~{n}, {kind}",
                raw[kind]["report_and_complete_ms"],
                unit="ms",
                over="trials",
                how=f"`on_trial_result` x10 + `on_trial_complete`: Optuna `report`/`tell` into {where}",
            )
        )
    return Section("Searcher overhead", figures, raw)
