"""The spec's shape: pydantic models with strict types, finite numbers and limits that protect the machine."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    Tag,
)
from pydantic_core import PydanticCustomError

from orchestrator.uris import with_lower_scheme

# Limits that protect the machine. Each lies far beyond what a real sweep needs, and the message
# that refuses a value names it.
MAX_TRIALS = 100_000  # a big sweep runs a few thousand; Optuna's TPE slows down sharply past ~10,000
MAX_CONCURRENT = 4_096  # trials at once: more than any cluster has workers
MAX_EPOCHS = 10_000  # fine-tuning takes tens of epochs; bounds ASHA's rungs and every epoch loop
MAX_SEED = 2**32 - 1  # numpy and Optuna take 32-bit seeds, and numpy refuses negative ones
MAX_TRIAL_CPUS = 1_024  # one trial is one process on one node
MAX_TRIAL_GPUS = 16  # the most GPUs one node carries
# ASHA keeps 1/reduction_factor of the trials at each rung, and has log(max/grace) / log(factor)
# rungs: a factor of 1.0000001 builds 138 million of them. 1.5 keeps two thirds per rung, gentler
# than anyone uses (2 to 4 is usual); 100 keeps 1 %.
MIN_REDUCTION_FACTOR = 1.5
MAX_REDUCTION_FACTOR = 100.0
MAX_CHOICES = 1_000  # choices of one categorical parameter (timm has about 1,300 architectures in all)
MAX_SPACE_ENTRIES = 64  # every hyperparameter a trial knows (about 25) fits
MAX_BASELINES = 1_000
MAX_CLASSES = 100_000  # ImageNet-21k has 21,841
MAX_TEXT = 4_096  # one path, URI or name: the OS's longest path
MAX_NAME = 100  # an experiment or registered model name: also a directory name under `storage`
# Objectives of one sweep: non-dominated sorting and the Pareto front grow with each one, and
# Optuna's multi-objective TPE is studied for two or three.
MAX_OBJECTIVES = 4
MAX_BUDGET = 1e15  # parameters, MACs per image or milliseconds: past any model that runs anywhere

REPORTED_METRICS = ("val_acc", "val_loss", "val_f1", "val_precision", "val_recall", "train_loss")
DIGITS_CLASSES = list(range(10))
DEFAULT_DIGITS_TARGET = [5, 6, 7, 8, 9]
DEFAULT_DIGITS_SOURCE = [0, 1, 2, 3, 4]  # disjoint from the default target
# Directories under `storage` that are not experiments (orchestrator.run.pretrained.CACHE_DIR).
RESERVED_STORAGE_NAMES = ("pretrained",)
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"


def _scalar(value: Any) -> Any:
    """A fixed value, a choice, a condition's value: a name, a finite number, or true/false."""
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        raise PydanticCustomError("finite_number", "must be a finite number")
    raise PydanticCustomError("scalar", "must be a name, a number or true/false, not a {kind}", {"kind": _kind(value)})


def _condition_value(value: Any) -> Any:
    """`when: {unfreeze: gradual}` or `when: {unfreeze: [gradual, lp_ft]}`."""
    return [_scalar(v) for v in value] if isinstance(value, list) else _scalar(value)


def _class_name(value: Any) -> int | str:
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise PydanticCustomError(
        "class_name", "a class is a digit (0-9) or a folder name, not a {kind}", {"kind": _kind(value)}
    )


def _kind(value: Any) -> str:
    names = {bool: "true/false", dict: "mapping", list: "list", type(None): "null"}
    return names.get(type(value), type(value).__name__)


Scalar = Annotated[Any, PlainValidator(_scalar)]
Condition = dict[str, Annotated[Any, PlainValidator(_condition_value)]]
ClassName = Annotated[Any, PlainValidator(_class_name)]
Text = Annotated[str, Field(max_length=MAX_TEXT)]
Uri = Annotated[str, Field(max_length=MAX_TEXT), AfterValidator(with_lower_scheme)]  # S3:// is s3://


class StrictModel(BaseModel):
    # strict: no "2" or true where a number is meant, no 2.0 where an int is (an int is fine for a
    # float); allow_inf_nan: NaN passes every range check, since comparisons with NaN are false.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class FloatParam(StrictModel):
    type: Literal["float"]
    low: float
    high: float
    step: float | None = None
    log: bool = False
    when: Condition | None = None


class IntParam(StrictModel):
    type: Literal["int"]
    low: int
    high: int
    step: int = 1
    log: bool = False
    when: Condition | None = None


class CategoricalParam(StrictModel):
    type: Literal["categorical"]
    choices: list[Scalar] = Field(min_length=1, max_length=MAX_CHOICES)
    when: Condition | None = None


SearchParam = Union[FloatParam, IntParam, CategoricalParam]
PARAM_TYPES = ("float", "int", "categorical")


def _param_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        kind = value.get("type")
        return kind if kind in PARAM_TYPES else None  # None: pydantic reports a bad/missing `type`
    return "fixed"


SpaceEntry = Annotated[
    Annotated[FloatParam, Tag("float")]
    | Annotated[IntParam, Tag("int")]
    | Annotated[CategoricalParam, Tag("categorical")]
    | Annotated[Scalar, Tag("fixed")],
    Discriminator(
        _param_kind,
        custom_error_type="invalid_param",
        custom_error_message=(
            "a search parameter needs `type: float | int | categorical`, or give a plain value to fix it"
        ),
    ),
]


class Objective(StrictModel):
    metric: Text = "val_acc"  # a reported metric, or (beside one, in a list) a cost: params, macs, latency_ms
    mode: Literal["max", "min"] = "max"

    @property
    def key(self) -> str:
        """The metric trials report for it (a cost's name is the spec's: `params` is `total_params`)."""
        from trainables.budgets import COSTS

        return COSTS.get(self.metric, self.metric)


def _objective_kind(value: Any) -> str | None:
    return "list" if isinstance(value, list) else "single" if isinstance(value, dict) else None


ObjectiveEntry = Annotated[
    Annotated[Objective, Tag("single")]
    | Annotated[list[Objective], Field(min_length=1, max_length=MAX_OBJECTIVES), Tag("list")],
    Discriminator(
        _objective_kind,
        custom_error_type="invalid_objective",
        custom_error_message="expected `{metric: NAME, mode: max|min}` or a list of them (several objectives)",
    ),
]


class Budget(StrictModel):
    max: float = Field(gt=0, le=MAX_BUDGET)


class Constraints(StrictModel):
    """Deployment budgets: a config over any of them never trains (outcome `infeasible`)."""

    params: Budget | None = None  # parameters of the model (total_params)
    macs: Budget | None = None  # multiply-accumulates per image at the input size
    latency_ms: Budget | None = None  # median single-image latency on the trial's device


class ImageFolderSource(StrictModel):
    imagefolder: Text  # class-per-folder images; with train/ and val/ (and test/) subfolders, or split below
    val_fraction: float = Field(0.2, gt=0, lt=1)


def _dataset_kind(value: Any) -> str | None:
    return "digits" if isinstance(value, str) else "folder" if isinstance(value, dict) else None


DatasetSource = Annotated[
    Annotated[Literal["digits"], Tag("digits")] | Annotated[ImageFolderSource, Tag("folder")],
    Discriminator(
        _dataset_kind,
        custom_error_type="invalid_dataset",
        custom_error_message="expected `digits` or `{imagefolder: PATH}`",
    ),
]
Classes = list[ClassName]


class DataSpec(StrictModel):
    dataset: DatasetSource = "digits"
    classes: Classes | None = Field(None, min_length=2, max_length=MAX_CLASSES)  # default: digits 5-9 / all folders
    train_per_class: int | None = Field(20, gt=0)  # None: every training image
    val_per_class: int | None = Field(None, gt=0)  # digits only: cap on validation images per class
    image_size: int | None = Field(None, ge=8, le=1024)  # None: each backbone's pretrained input size


class PretrainSpec(StrictModel):
    dataset: DatasetSource = "digits"
    classes: Classes | None = Field(None, min_length=2, max_length=MAX_CLASSES)
    epochs: int = Field(5, gt=0, le=MAX_EPOCHS)
    lr: float = Field(3e-3, gt=0, le=10)


class WeightsSpec(StrictModel):
    source: Text = "pretrain"  # pretrain | hub | file:<path> | none
    pretrain: PretrainSpec | None = None


class Prescreen(StrictModel):
    keep_top: int = Field(ge=1, le=MAX_CHOICES)  # backbones kept by zero-training rank (LogME) before the sweep


class SearchSpec(StrictModel):
    algorithm: Literal["tpe", "random", "grid"] = "tpe"
    trials: int = Field(20, gt=0, le=MAX_TRIALS)
    concurrent: int = Field(1, gt=0, le=MAX_CONCURRENT)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    max_failures: int = Field(2, ge=0, le=100)  # retries of a trial that raises, from its last checkpoint
    baselines: list[dict[str, Scalar]] = Field(default_factory=list, max_length=MAX_BASELINES)
    # An Optuna RDB URL or a journal file (*.journal); default: a journal file beside local results.
    # Credentials belong in the environment.
    study_storage: Uri | None = None
    prescreen: Prescreen | None = None  # rank the backbone choices and search only the best


class EarlyStopping(StrictModel):
    scheduler: Literal["asha", "none"] = "asha"
    max_epochs: int = Field(10, gt=0, le=MAX_EPOCHS)
    grace_period: int = Field(1, gt=0, le=MAX_EPOCHS)
    reduction_factor: float = Field(3.0, ge=MIN_REDUCTION_FACTOR, le=MAX_REDUCTION_FACTOR)
    # gradual / lp_ft trials still partly frozen are judged at rungs only once fully trainable
    phase_aware: bool = False


class Resources(StrictModel):
    cpu: float = Field(1.0, gt=0, le=MAX_TRIAL_CPUS)
    gpu: float = Field(0.0, ge=0, le=MAX_TRIAL_GPUS)


class MlflowSpec(StrictModel):
    tracking_uri: Uri | None = None
    register_best_as: str | None = Field(None, pattern=NAME_PATTERN, max_length=MAX_NAME)


class SweepSpec(StrictModel):
    experiment: str = Field(pattern=NAME_PATTERN, max_length=MAX_NAME)
    objective: ObjectiveEntry = Objective()
    constraints: Constraints | None = None
    data: DataSpec = DataSpec()
    weights: WeightsSpec = WeightsSpec()
    search: SearchSpec = SearchSpec()
    early_stopping: EarlyStopping = EarlyStopping()
    resources: Resources = Resources()
    space: dict[str, SpaceEntry] = Field(min_length=1, max_length=MAX_SPACE_ENTRIES)
    mlflow: MlflowSpec = MlflowSpec()
    storage: Uri = "./runs"

    @property
    def searched(self) -> dict[str, SearchParam]:
        return {name: p for name, p in self.space.items() if isinstance(p, BaseModel)}

    @property
    def fixed(self) -> dict[str, Any]:
        return {name: p for name, p in self.space.items() if not isinstance(p, BaseModel)}

    @property
    def objectives(self) -> tuple[Objective, ...]:
        """What the sweep optimises, the first objective first (it picks the best trial)."""
        return tuple(self.objective) if isinstance(self.objective, list) else (self.objective,)

    @property
    def primary(self) -> Objective:
        return self.objectives[0]

    @property
    def objective_keys(self) -> tuple[str, ...]:
        return tuple(o.key for o in self.objectives)

    @property
    def objective_modes(self) -> tuple[str, ...]:
        return tuple(o.mode for o in self.objectives)

    @property
    def budgets(self) -> dict[str, float]:
        """Each budgeted cost (its spec name) and its maximum."""
        if self.constraints is None:
            return {}
        return {name: budget.max for name, budget in self.constraints if budget is not None}

    @property
    def backbones(self) -> list[str]:
        from trainables.hyperparams import HYPERPARAMETERS

        entry = self.space.get("backbone", HYPERPARAMETERS["backbone"].default)
        return list(entry.choices) if isinstance(entry, CategoricalParam) else [entry]

    def spec_hash(self) -> str:
        """Identity of the sweep; fields left at their defaults are not part of it, so a new
        optional field in a later version does not make existing sweeps look changed."""
        canonical = json.dumps(self.model_dump(mode="json", warnings=False, exclude_defaults=True), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]
