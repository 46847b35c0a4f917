"""Every hostile input of the corpus (hostile_cases.py) is refused the same way: exit status 2,
one printable line of bounded length on stderr that names the file, the field and the problem,
no traceback, nothing on stdout; and `sweep` writes nothing and starts nothing before it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.errors import MAX_MESSAGE_CHARS, escape
from orchestrator.spec.checks import timm_models
from tests.orchestrator.hostile_cases import BASE, CASES, Case

CATEGORIES = {case.category for case in CASES}


def test_the_corpus_is_large_and_covers_every_kind_of_input():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    assert len(CASES) >= 100
    assert CATEGORIES >= {
        "yaml",
        "types",
        "nan",
        "limits",
        "names",
        "uris",
        "conditions",
        "messages",
        "images",
        "weights",
    }
    assert sum(case.sweep or "sweep" in case.commands for case in CASES) >= 20


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """Inputs live in `inputs/`; commands run in the empty `work/`, without MLFLOW_TRACKING_URI,
    with their own image-check cache, so anything they write would show."""
    timm_models()  # the user's list of timm's names, known before the case: its cache is not the case's doing
    (tmp_path / "inputs").mkdir()
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("ORCHESTRATOR_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def _write_spec(case: Case, inputs: Path) -> Path:
    content = case.spec(inputs) if callable(case.spec) else case.spec
    content = content.encode() if isinstance(content, str) else content
    if case.spec_path is not None:
        return case.spec_path(inputs, content)
    path = inputs / "spec.yaml"
    path.write_bytes(content)
    return path


def _everything_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


def _assert_refused_in_one_line(case: Case, spec: Path, argv: list[str], capsys) -> str:
    assert main(argv) == 2, f"{case.id}: {argv[0]} accepted it"
    out, err = capsys.readouterr()
    assert out == "", out
    assert err.count("\n") == 1 and err.endswith("\n"), f"{case.id}: not one line: {err!r}"
    line = err[:-1]
    assert "Traceback" not in line
    assert line.isprintable(), f"{case.id}: unprintable characters in {line!r}"
    assert len(line) <= MAX_MESSAGE_CHARS, f"{case.id}: {len(line)} characters"
    assert line.startswith("error: "), line
    source = escape(str(spec))
    assert line.startswith(f"error: {source}: ") or "..." in line[: len("error: ") + 120], line
    if case.field:
        assert f": {case.field}: " in line, f"{case.id}: field {case.field!r} not named in {line!r}"
    assert case.words in line, f"{case.id}: {case.words!r} not in {line!r}"
    if case.secret:
        assert case.secret not in line
    return line


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_input_is_refused_in_one_line(case: Case, scratch, capsys):
    spec = _write_spec(case, scratch / "inputs")
    inputs_before = _everything_under(scratch / "inputs")
    commands = case.commands + (("sweep",) if case.sweep and "sweep" not in case.commands else ())
    for command in commands:
        argv = [command, str(spec), *(case.args if command == "sweep" else ())]
        _assert_refused_in_one_line(case, spec, argv, capsys)
        # nothing written: no mlflow.db, runs/, mlartifacts/ or journal here, no cache entry,
        # nothing new beside the inputs (a payload's marker included)
        assert _everything_under(scratch / "work") == set(), command
        assert not (scratch / "cache").exists(), command
        assert _everything_under(scratch / "inputs") == inputs_before, command
    if "ray" in sys.modules:
        assert not sys.modules["ray"].is_initialized(), "Ray was started for a spec that was refused"


@pytest.mark.parametrize(
    "case",
    [case for case in CASES if case.spec_path is None and not callable(case.spec)][:5],
    ids=lambda case: case.id,
)
def test_the_line_names_a_relative_spec_path_as_given(case: Case, scratch, capsys):
    """The file is named as the user typed it, not resolved."""
    Path("relative.yaml").write_bytes(case.spec.encode() if isinstance(case.spec, str) else case.spec)
    try:
        assert main(["validate", "relative.yaml"]) == 2
        assert capsys.readouterr().err.startswith("error: relative.yaml")
    finally:
        os.unlink("relative.yaml")


def test_the_base_spec_of_the_corpus_is_valid(scratch, capsys):
    """Each case spoils one thing of a valid spec, so the line is about that one thing."""
    path = scratch / "inputs" / "spec.yaml"
    path.write_text(BASE)
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err


# -- inputs that look odd but are fine: they work as a user would expect --------------------------


def _load(scratch: Path, text: str | bytes, overrides=None):
    from orchestrator.spec import load_spec

    path = scratch / "inputs" / "ok.yaml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return load_spec(path, overrides)


@pytest.mark.parametrize(
    "text,check",
    [
        (BASE + "storage: S3://bucket/runs\n", lambda s: s.storage == "s3://bucket/runs"),
        (
            BASE.replace("trials: 4,", "trials: 4, study_storage: 'SQLITE:////tmp/Optuna.db',"),
            lambda s: s.search.study_storage == "sqlite:////tmp/Optuna.db",
        ),
        (
            BASE + "mlflow: {tracking_uri: 'HTTPS://alice@mlflow.example.com:5000'}\n",
            lambda s: s.mlflow.tracking_uri == "https://alice@mlflow.example.com:5000",
        ),
        (BASE.replace("low: 1.0e-4, high: 1.0e-2", "low: 1e-4, high: 1E-2"), lambda s: s.space["lr"].low == 1e-4),
        (BASE + "  dropout: 0\nresources: {cpu: 2, gpu: 1}\n", lambda s: s.fixed["dropout"] == 0),
        (
            BASE.replace("grace_period: 1}", "grace_period: 1, reduction_factor: 2}"),
            lambda s: s.early_stopping.reduction_factor == 2.0,
        ),
        (
            BASE.replace("search: {trials: 4,", "search: {<<: {trials: 9, seed: 3}, trials: 4,"),
            lambda s: (s.search.trials, s.search.seed) == (4, 3),
        ),
        ("\ufeff" + BASE, lambda s: s.experiment == "hostile"),
        (
            BASE.replace("lr: {type", "lr: &range {type") + "  l2sp: *range\n",
            lambda s: s.space["l2sp"] == s.space["lr"],
        ),
        (BASE.replace("experiment: hostile", "experiment: pretrained-2"), lambda s: s.experiment == "pretrained-2"),
        (BASE + "resources: {gpu: 0.25}\n", lambda s: s.resources.gpu == 0.25),
    ],
    ids=[
        "s3_in_capitals",
        "sqlite_in_capitals",
        "https_in_capitals_with_a_login",
        "exponent_floats_yaml_1_2",
        "ints_where_floats_are_meant",
        "int_reduction_factor",
        "merge_key_then_override",
        "byte_order_mark",
        "anchor_and_alias",
        "name_that_starts_like_a_reserved_one",
        "fractional_gpu",
    ],
)
def test_odd_but_valid_specs_work(scratch, text, check):
    assert check(_load(scratch, text))


def test_a_cli_override_fills_an_empty_section(scratch):
    text = BASE.replace("search: {trials: 4, baselines: [{backbone: test_resnet, unfreeze: frozen}]}", "search:")
    assert _load(scratch, text, {"search": {"trials": 3}}).search.trials == 3


def test_image_folder_under_home_with_links_inside_and_16_bit_images(scratch, monkeypatch, capsys):
    import numpy as np
    from PIL import Image

    from tests.orchestrator.hostile_cases import image_folder
    from trainables.data import load_imagefolder_task

    monkeypatch.setenv("HOME", str(scratch / "inputs"))
    root = image_folder(scratch / "inputs")
    Image.fromarray(np.full((8, 8), 40_000, dtype=np.uint16)).save(root / "cat" / "deep.png")
    (root / "dog" / "alias.png").symlink_to(root / "dog" / "0.png")
    (root / "cat" / ".thumbs").mkdir()
    (root / "cat" / ".thumbs" / "junk.txt").write_text("skipped: hidden")
    path = scratch / "inputs" / "ok.yaml"
    path.write_text(BASE + "data: {dataset: {imagefolder: ~/pets}, train_per_class: 1}\n")
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err
    task = load_imagefolder_task("~/pets")
    assert len(task.train) + len(task.val) == 8  # the 16-bit image and the link included, the hidden folder not


def test_a_pth_tar_weights_file_is_accepted_by_the_spec_check(scratch, capsys):
    import timm
    import torch

    from tests.orchestrator.hostile_cases import weights_spec

    weights = scratch / "inputs" / "model_best.pth.tar"
    torch.save({"state_dict": timm.create_model("test_resnet").state_dict()}, weights)
    path = scratch / "inputs" / "ok.yaml"
    path.write_text(weights_spec(weights))
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err


def test_every_directory_the_storage_layout_shares_is_a_reserved_experiment_name():
    from orchestrator.run import CACHE_DIR
    from orchestrator.spec import RESERVED_STORAGE_NAMES

    assert CACHE_DIR in RESERVED_STORAGE_NAMES


@pytest.mark.parametrize(
    "folder,words",
    [('"/tmp/a\\0b"', "NUL"), ("/" + "x" * 300, "a name of 300 bytes")],
)
def test_paths_no_os_could_take_are_refused_even_for_another_machine(scratch, capsys, folder, words):
    path = scratch / "inputs" / "cluster.yaml"
    path.write_text(BASE + f"data: {{dataset: {{imagefolder: {folder}}}}}\n")
    assert main(["validate", "--no-data", str(path)]) == 2
    assert words in capsys.readouterr().err


# -- spec.yaml as logged to MLflow --------------------------------------------------------------


def test_the_logged_spec_drops_comments_and_keeps_order_and_values(scratch):
    import yaml

    from orchestrator.spec import spec_text_for_logging

    path = scratch / "inputs" / "spec.yaml"
    path.write_text(
        "# token: ghp_0123456789abcdefghij0123456789abcd\n"
        + BASE.replace("batch_size: 16", "batch_size: 16  # password=hunter2")
    )
    text = spec_text_for_logging(path)
    assert "ghp_" not in text and "hunter2" not in text and "#" not in text
    assert yaml.safe_load(text) == yaml.safe_load(BASE)
    assert list(yaml.safe_load(text)) == ["experiment", "weights", "search", "early_stopping", "space"]


def test_the_logged_spec_is_read_as_strictly_as_the_spec(scratch):
    from orchestrator.errors import SpecError
    from orchestrator.spec import spec_text_for_logging

    path = scratch / "inputs" / "spec.yaml"
    path.write_text(BASE + "experiment: again\n")
    with pytest.raises(SpecError, match="duplicate key"):
        spec_text_for_logging(path)
