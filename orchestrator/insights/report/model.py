"""The report's data: each trial as MLflow holds it, and what the sweep found."""

from __future__ import annotations

from dataclasses import dataclass, field

ACCURACY = "val_acc"  # the transfer curve, trade-off and predicted-vs-achieved plot accuracy
LEADERBOARD_ROWS = 20  # in the HTML; the terminal shows the first TERMINAL_ROWS
TERMINAL_ROWS = 5
TOP_CURVES = 5
TOP_FRACTION = 0.25  # "best range" of a parameter: the range spanned by the top quartile of completed trials


@dataclass
class TrialRow:
    """One trial as MLflow holds it; the leaderboard values are at its best epoch (by the objective)."""

    run_id: str
    trial_id: str
    params: dict[str, str]
    outcome: str
    epochs: int  # epochs actually run
    curve: list[tuple[int, float]]  # the objective per epoch
    best_epoch: int | None = None
    best: float | None = None  # the objective at best_epoch
    val_acc: float | None = None
    val_f1: float | None = None
    total_params: float | None = None
    latency_ms: float | None = None
    macs: float | None = None
    transferred_groups: float | None = None  # k, as the trial reported it
    body_groups: float | None = None  # L, the backbone's body layer groups
    drift: dict[str, float] = field(default_factory=dict)
    finals: dict[str, float] = field(default_factory=dict)  # each objective at the last epoch
    pareto: bool | None = None  # several objectives: on the Pareto front (the run's `pareto` tag)

    @property
    def baseline(self) -> bool:
        """One of the spec's baselines (reference points, run to max_epochs)."""
        return self.params.get("baseline") not in (None, "", "None")


@dataclass(frozen=True)
class ValueRange:
    """Where the top trials put one parameter: [low, high] for numbers, the values seen otherwise."""

    low: float | None = None
    high: float | None = None
    values: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.values:
            return ", ".join(self.values)
        return num(self.low) if self.low == self.high else f"{num(self.low)} .. {num(self.high)}"


@dataclass
class Importances:
    """fANOVA importances over the completed trials, how far to trust them, and the conditional
    parameters' importances within the trials that searched them."""

    values: dict[str, float] = field(default_factory=dict)  # most important first
    spread: dict[str, float] = field(default_factory=dict)  # standard deviation over bootstrap resamples
    trials: int = 0  # completed trials they rest on
    caveat: str = ""  # why not to read them as advice yet ("" when they hold up)
    note: str = ""  # why there are none
    within: dict[str, tuple[str, float, int]] = field(default_factory=dict)  # param -> (condition, value, trials)


@dataclass
class Prediction:
    """Zero-training scores (LogME) of each backbone against the accuracy each reached."""

    source: str
    scores: dict[str, float]
    achieved: dict[str, float]
    spearman: float | None
    note: str = ""


@dataclass
class Report:
    experiment: str
    sweep_id: str
    parent_run_id: str
    metric: str
    mode: str
    max_epochs: int
    searched: list[str]
    trials: list[TrialRow]  # ranked, best first
    best_run_id: str | None
    rungs: list[int]
    importances: Importances
    best_ranges: dict[str, ValueRange]
    spent_epochs: int
    full_epochs: int
    prediction: Prediction | None
    figures: dict[str, bytes] = field(default_factory=dict)
    location: str = ""  # where index.html was logged
    objectives: list[tuple[str, str]] = field(default_factory=list)  # (metric, mode), the first one first
    budgets: dict[str, float] = field(default_factory=dict)  # the spec's constraints: cost name -> max

    @property
    def outcomes(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.trials:
            counts[row.outcome] = counts.get(row.outcome, 0) + 1
        return counts

    @property
    def saved_fraction(self) -> float:
        return 1 - self.spent_epochs / self.full_epochs if self.full_epochs else 0.0


def num(value) -> str:
    """Numbers to 4 significant digits (params arrive from MLflow as strings)."""
    if value is None:
        return "-"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if isinstance(value, str) and number.is_integer() and "." not in value and "e" not in value.lower():
        return value
    if number.is_integer() and abs(number) >= 1e4:  # parameter counts, MACs: all digits, grouped
        return f"{int(number):,}"
    return f"{number:.4g}"
