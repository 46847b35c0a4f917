"""The sweep spec (`search_spaces/*.yaml`): pydantic models, loading and one-line errors.

`load_spec` is the only place that reads a spec file. It returns a validated `SweepSpec`,
or raises `SpecError` naming the file, the field and the problem.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PositiveInt,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    Tag,
    ValidationError,
)

from orchestrator.errors import SpecError, did_you_mean

Scalar = Union[StrictBool, StrictInt, StrictFloat, StrictStr]
# `when: {unfreeze: gradual}` or `when: {unfreeze: [gradual, lp_ft]}`
Condition = dict[str, Scalar | list[Scalar]]

REPORTED_METRICS = ("val_acc", "val_loss", "val_f1", "val_precision", "val_recall", "train_loss")
DIGITS_CLASSES = list(range(10))
DEFAULT_DIGITS_TARGET = [5, 6, 7, 8, 9]
DEFAULT_DIGITS_SOURCE = [0, 1, 2, 3, 4]  # disjoint from the default target


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
    choices: list[Scalar] = Field(min_length=1)
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
    metric: str = "val_acc"
    mode: Literal["max", "min"] = "max"


class ImageFolderSource(StrictModel):
    imagefolder: str  # class-per-folder images; with train/ and val/ (and test/) subfolders, or split below
    val_fraction: float = Field(0.2, gt=0, lt=1)


DatasetSource = Union[Literal["digits"], ImageFolderSource]


class DataSpec(StrictModel):
    dataset: DatasetSource = "digits"
    classes: list[Union[StrictInt, StrictStr]] | None = Field(None, min_length=2)  # default: digits 5-9 / all folders
    train_per_class: PositiveInt | None = 20  # None: every training image
    val_per_class: PositiveInt | None = None  # digits only: cap on validation images per class
    image_size: int | None = Field(None, ge=8, le=1024)  # None: each backbone's pretrained input size


class PretrainSpec(StrictModel):
    dataset: DatasetSource = "digits"
    classes: list[Union[StrictInt, StrictStr]] | None = Field(None, min_length=2)
    epochs: PositiveInt = 5
    lr: float = Field(3e-3, gt=0)


WEIGHT_SOURCES = ("pretrain", "hub", "file:<path>", "none")


class WeightsSpec(StrictModel):
    source: str = "pretrain"  # pretrain | hub | file:<path> | none
    pretrain: PretrainSpec | None = None


class Prescreen(StrictModel):
    keep_top: StrictInt = Field(ge=1)  # backbones kept by zero-training rank (LogME) before the sweep


class SearchSpec(StrictModel):
    algorithm: Literal["tpe", "random", "grid"] = "tpe"
    trials: PositiveInt = 20
    concurrent: PositiveInt = 1
    seed: int = 0
    max_failures: int = Field(2, ge=0, le=100)  # retries of a trial that raises, from its last checkpoint
    baselines: list[dict[str, Scalar]] = Field(default_factory=list)
    # An Optuna RDB URL or a journal file (*.journal); default: a journal file beside local results.
    # Credentials belong in the environment.
    study_storage: str | None = None
    prescreen: Prescreen | None = None  # rank the backbone choices and search only the best


class EarlyStopping(StrictModel):
    scheduler: Literal["asha", "none"] = "asha"
    max_epochs: PositiveInt = 10
    grace_period: PositiveInt = 1
    reduction_factor: float = Field(3.0, gt=1)


class Resources(StrictModel):
    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)


class MlflowSpec(StrictModel):
    tracking_uri: str | None = None
    register_best_as: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class SweepSpec(StrictModel):
    experiment: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", max_length=100)
    objective: Objective = Objective()
    data: DataSpec = DataSpec()
    weights: WeightsSpec = WeightsSpec()
    search: SearchSpec = SearchSpec()
    early_stopping: EarlyStopping = EarlyStopping()
    resources: Resources = Resources()
    space: dict[str, SpaceEntry] = Field(min_length=1)
    mlflow: MlflowSpec = MlflowSpec()
    storage: str = "./runs"

    @property
    def searched(self) -> dict[str, SearchParam]:
        return {name: p for name, p in self.space.items() if isinstance(p, BaseModel)}

    @property
    def fixed(self) -> dict[str, Any]:
        return {name: p for name, p in self.space.items() if not isinstance(p, BaseModel)}

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


# Every key any spec model accepts, for "did you mean" on unknown keys.
def _all_field_names() -> set[str]:
    models = [
        SweepSpec,
        Objective,
        DataSpec,
        PretrainSpec,
        WeightsSpec,
        SearchSpec,
        Prescreen,
        EarlyStopping,
        Resources,
        MlflowSpec,
        FloatParam,
        IntParam,
        CategoricalParam,
    ]
    return {name for model in models for name in model.model_fields}


def load_spec(
    path: str | Path, overrides: dict[str, dict[str, Any]] | None = None, *, local_files: bool = True
) -> SweepSpec:
    """Read, parse and fully check a spec file. `overrides` are applied per section (CLI flags);
    `local_files=False` skips checking that data folders and weights files exist here."""
    from orchestrator.checks import check_spec  # checks imports timm; keep spec parsing light

    source = str(path)
    raw = _read_yaml(Path(path), source)
    for section, values in (overrides or {}).items():
        raw[section] = {**(raw.get(section) or {}), **values}
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as exc:
        raise _one_line(exc, source) from None
    check_spec(spec, source, local_files=local_files)
    return spec


def _read_yaml(path: Path, source: str) -> dict:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SpecError(source, None, "no such file") from None
    except OSError as exc:
        raise SpecError(source, None, f"cannot read: {exc.strerror}") from None
    if not data.strip():
        raise SpecError(source, None, "the file is empty; expected a YAML mapping with `experiment` and `space`")
    try:
        raw = yaml.safe_load(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise SpecError(source, None, "not a text file (is it binary?); expected YAML") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(source, None, f"YAML syntax error at {where}{problem}") from None
    if not isinstance(raw, dict):
        raise SpecError(source, None, f"expected a YAML mapping at the top level, got {type(raw).__name__}")
    return raw


def _one_line(exc: ValidationError, source: str) -> SpecError:
    error = exc.errors()[0]
    loc = [str(part) for part in error["loc"]]
    # Drop the union tag pydantic inserts after a space entry (space.lr.float.low -> space.lr.low).
    if len(loc) > 2 and loc[0] == "space" and loc[2] in (*PARAM_TYPES, "fixed"):
        del loc[2]
    field = ".".join(loc) or None
    if error["type"] == "extra_forbidden":
        parent = ".".join(loc[:-1]) or "the top level"
        return SpecError(source, field, f"unknown key in {parent}{did_you_mean(loc[-1], _all_field_names())}")
    if error["type"] == "missing":
        return SpecError(source, field, "required but missing")
    value = error.get("input")
    shown = f" (got {value!r})" if not isinstance(value, dict | list) else ""
    return SpecError(source, field, f"{error['msg'][:1].lower()}{error['msg'][1:]}{shown}")
