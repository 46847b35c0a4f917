"""Reading a spec: its YAML parsed, validated against the models, checked, and any problem as one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import (
    ValidationError,
)

from orchestrator.errors import SpecError, did_you_mean, shorten
from orchestrator.spec.models import (
    Budget,
    CategoricalParam,
    Constraints,
    DataSpec,
    EarlyStopping,
    FloatParam,
    ImageFolderSource,
    IntParam,
    MlflowSpec,
    Objective,
    Prescreen,
    PretrainSpec,
    Resources,
    SearchSpec,
    SweepSpec,
    WeightsSpec,
    _kind,
)
from orchestrator.spec.reading import read_spec_yaml


# Every key any spec model accepts, for "did you mean" on unknown keys.
def _all_field_names() -> set[str]:
    models = [
        SweepSpec,
        Objective,
        Constraints,
        Budget,
        DataSpec,
        ImageFolderSource,
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
    from orchestrator.spec.checks import check_spec

    source = str(path)
    raw = read_spec_yaml(Path(path), source)
    _apply_overrides(raw, overrides or {}, source)
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as exc:
        raise _one_line(exc, source, raw) from None
    check_spec(spec, source, local_files=local_files)
    return spec


def _apply_overrides(raw: dict, overrides: dict[str, dict[str, Any]], source: str) -> None:
    for section, values in overrides.items():
        current = raw.get(section)
        if current is not None and not isinstance(current, dict):
            raise SpecError(source, section, f"must be a mapping of settings, got a {_kind(current)}")
        raw[section] = {**(current or {}), **values}


def _one_line(exc: ValidationError, source: str, raw: dict) -> SpecError:
    # Of several errors (one per union member), the one deepest in the file says most.
    errors = [(_field_name(error["loc"], raw, error["type"]), error) for error in exc.errors()]
    field, error = max(errors, key=lambda pair: len(pair[0]))
    if error["type"] == "extra_forbidden":
        key = str(error["loc"][-1])
        parent = field.rpartition(".")[0] if field.endswith(f".{key}") else ""
        hint = did_you_mean(key, _all_field_names())
        return SpecError(source, field, f"unknown key in {parent or 'the top level'}{hint}")
    if error["type"] == "missing":
        return SpecError(source, field, "required but missing")
    value = error.get("input")
    if error["type"] in ("model_type", "dict_type", "model_attributes_type"):
        return SpecError(source, field or None, f"must be a mapping of settings, got a {_kind(value)}")
    shown = f" (got {shorten(repr(value), 60)})" if not isinstance(value, dict | list) else ""
    return SpecError(source, field or None, f"{error['msg'][:1].lower()}{error['msg'][1:]}{shown}")


def _field_name(loc: tuple, raw: Any, error_type: str) -> str:
    """`loc` as the user wrote it (`space.backbone.choices[0]`): only the keys and indices that are
    in the file; the union and discriminator tags pydantic inserts between them are not."""
    name, node = "", raw
    for i, part in enumerate(loc):
        if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            name, node = f"{name}[{part}]", node[part]
        elif isinstance(node, dict) and part in node:
            name, node = f"{name}.{part}" if name else str(part), node[part]
        elif i == len(loc) - 1 and error_type == "missing":
            name = f"{name}.{part}" if name else str(part)
    return name
