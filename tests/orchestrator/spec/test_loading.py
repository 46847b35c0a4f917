"""Spec loading: the demo spec is valid; every malformed spec gives exit 2 and one clear line."""

import re
import textwrap

import pytest

from orchestrator.cli import main
from orchestrator.errors import SpecError
from orchestrator.spec import CategoricalParam, FloatParam, load_spec
from tests.conftest import REPO

GOOD = textwrap.dedent("""\
    experiment: unit
    weights: {source: pretrain, pretrain: {classes: [0, 1, 2, 3, 4], epochs: 1}}
    search: {trials: 4, baselines: [{backbone: test_resnet, unfreeze: frozen}]}
    early_stopping: {max_epochs: 3, grace_period: 1}
    space:
      backbone: {type: categorical, choices: [test_resnet, test_vit]}
      unfreeze: {type: categorical, choices: [frozen, gradual]}
      unfreeze_every: {type: int, low: 1, high: 2, when: {unfreeze: gradual}}
      lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
      batch_size: 16
""")


def test_demo_specs_are_valid():
    for path in sorted((REPO / "search_spaces").glob("*.yaml")):
        assert load_spec(path, local_files=False).experiment  # layers_cluster.yaml reads a cluster volume


def test_good_spec_parses_types_fixed_values_and_conditions(write_spec):
    spec = load_spec(write_spec(GOOD))
    assert isinstance(spec.space["backbone"], CategoricalParam)
    assert isinstance(spec.space["lr"], FloatParam) and spec.space["lr"].log
    assert spec.fixed == {"batch_size": 16}
    assert spec.space["unfreeze_every"].when == {"unfreeze": "gradual"}


def test_spec_hash_changes_with_content(write_spec):
    a = load_spec(write_spec(GOOD, "a.yaml"))
    b = load_spec(write_spec(GOOD.replace("trials: 4", "trials: 5"), "b.yaml"))
    assert a.spec_hash() != b.spec_hash()
    assert a.spec_hash() == load_spec(write_spec(GOOD, "c.yaml")).spec_hash()


def test_overrides_are_validated_like_the_file(write_spec):
    path = write_spec(GOOD)
    assert load_spec(path, {"search": {"trials": 9}}).search.trials == 9
    with pytest.raises(SpecError, match="search.trials"):
        load_spec(path, {"search": {"trials": 0}})


def _replace(old, new):
    assert old in GOOD, old
    return GOOD.replace(old, new)


# (case id, spec content, field named in the message, words the message must contain)
BAD_SPECS = [
    ("typo_key", _replace("trials: 4", "tirals: 4"), "search.tirals", "did you mean 'trials'"),
    ("typo_top_level", GOOD + "storge: ./x\n", "storge", "did you mean 'storage'"),
    ("unknown_backbone", _replace("test_vit]", "resnet5O]"), "space.backbone.choices[1]", "unknown timm backbone"),
    (
        "low_gt_high",
        _replace("low: 1.0e-4, high: 1.0e-2", "low: 1.0e-2, high: 1.0e-4"),
        "space.lr.low",
        "low <= high must hold, but got (low=0.01, high=0.0001)",
    ),
    (
        "log_low_zero",
        _replace("low: 1.0e-4, high: 1.0e-2, log: true", "low: 0.0, high: 1.0e-2, log: true"),
        "space.lr.low",
        "low > 0 must hold for log=True",
    ),
    (
        "when_unknown_param",
        _replace("when: {unfreeze: gradual}", "when: {unfrieze: gradual}"),
        "space.unfreeze_every.when.unfrieze",
        "did you mean 'unfreeze'",
    ),
    (
        "when_unknown_value",
        _replace("when: {unfreeze: gradual}", "when: {unfreeze: gradul}"),
        "space.unfreeze_every.when.unfreeze",
        "'gradul' is not a value",
    ),
    ("empty_file", "", None, "empty"),
    ("whitespace_file", "\n\n   \n", None, "empty"),
    ("yaml_syntax", "experiment: x\nspace: {lr: [1, 2\n", None, "YAML syntax error at line"),
    ("binary_file", b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", None, "not a text file"),
    ("top_level_list", "- a\n- b\n", None, "expected a YAML mapping"),
    (
        "study_storage_not_a_database",
        _replace("search: {trials: 4,", "search: {trials: 4, study_storage: optuna.db,"),
        "search.study_storage",
        "a journal file ending in .journal",
    ),
    (
        "study_storage_unknown_scheme",
        _replace("search: {trials: 4,", "search: {trials: 4, study_storage: 'redis://cache:6379',"),
        "search.study_storage",
        "expected an sqlite://, postgresql:// or mysql:// URL",
    ),
    ("trials_zero", _replace("trials: 4", "trials: 0"), "search.trials", "greater than 0"),
    ("trials_negative", _replace("trials: 4", "trials: -3"), "search.trials", "greater than 0"),
    ("trials_wrong_type", _replace("trials: 4", "trials: many"), "search.trials", "integer"),
    ("missing_experiment", GOOD.replace("experiment: unit\n", ""), "experiment", "required"),
    (
        "unknown_hyperparameter",
        _replace("batch_size: 16", "batchsize: 16"),
        "space.batchsize",
        "did you mean 'batch_size'",
    ),
    (
        "bad_param_type",
        _replace("{type: float, low: 1.0e-4", "{type: real, low: 1.0e-4"),
        "space.lr",
        "type: float | int | categorical",
    ),
    (
        "unknown_unfreeze_mode",
        _replace("[frozen, gradual]", "[frozen, gradually]"),
        "space.unfreeze.choices[1]",
        "must be one of",
    ),
    ("fixed_out_of_range", _replace("batch_size: 16", "batch_size: 0"), "space.batch_size", ">= 1"),
    (
        "baseline_outside_space",
        _replace("unfreeze: frozen}]", "unfreeze: full}]"),
        "search.baselines[0].unfreeze",
        "outside the space",
    ),
    (
        "baseline_unknown_param",
        _replace("unfreeze: frozen}]", "unfreez: frozen}]"),
        "search.baselines[0].unfreez",
        "did you mean 'unfreeze'",
    ),
    ("grace_gt_max", _replace("grace_period: 1", "grace_period: 5"), "early_stopping.grace_period", "<= max_epochs"),
    (
        "class_out_of_range",
        _replace("classes: [0, 1, 2, 3, 4]", "classes: [0, 1, 12]"),
        "weights.pretrain.classes",
        "0-9",
    ),
    (
        "pretrain_missing",
        _replace(
            "weights: {source: pretrain, pretrain: {classes: [0, 1, 2, 3, 4], epochs: 1}}",
            "weights: {source: pretrain}",
        ),
        "weights.pretrain",
        "required",
    ),
    ("unknown_metric", GOOD + "objective: {metric: val_acuracy}\n", "objective.metric", "did you mean 'val_acc'"),
    ("negative_cpu", GOOD + "resources: {cpu: -1}\n", "resources.cpu", "greater than 0"),
    ("absurd_image_size", GOOD + "data: {image_size: 100000}\n", "data.image_size", "less than or equal"),
    (
        "missing_dataset_path",
        GOOD + "data: {dataset: {imagefolder: /nonexistent/flowers}}\n",
        "data.dataset.imagefolder",
        "no such directory",
    ),
    (
        "when_on_a_range",
        _replace("when: {unfreeze: gradual}", "when: {lr: 0.001}"),
        "space.unfreeze_every.when.lr",
        "is a range",
    ),
    ("negative_lr", _replace("batch_size: 16", "batch_size: 16\n  weight_decay: -0.1"), "space.weight_decay", ">= 0"),
    (
        "prescreen_keep_top_zero",
        _replace("trials: 4,", "trials: 4, prescreen: {keep_top: 0},"),
        "search.prescreen.keep_top",
        "greater than or equal to 1",
    ),
    (
        "prescreen_keep_top_not_int",
        _replace("trials: 4,", "trials: 4, prescreen: {keep_top: true},"),
        "search.prescreen.keep_top",
        "valid integer",
    ),
    (
        "prescreen_without_keep_top",
        _replace("trials: 4,", "trials: 4, prescreen: {},"),
        "search.prescreen.keep_top",
        "required",
    ),
    (
        "prescreen_nothing_to_prune",
        _replace("trials: 4,", "trials: 4, prescreen: {keep_top: 2},"),
        "search.prescreen.keep_top",
        "has only 2 choices",
    ),
    (
        "prescreen_fixed_backbone",
        _replace("trials: 4,", "trials: 4, prescreen: {keep_top: 1},")
        .replace("backbone: test_resnet, unfreeze", "unfreeze")
        .replace("{type: categorical, choices: [test_resnet, test_vit]}", "test_resnet"),
        "search.prescreen.keep_top",
        "must be `type: categorical`",
    ),
    (
        "prescreen_without_weights",
        _replace("trials: 4,", "trials: 4, prescreen: {keep_top: 1},").replace(
            "weights: {source: pretrain, pretrain: {classes: [0, 1, 2, 3, 4], epochs: 1}}", "weights: {source: none}"
        ),
        "search.prescreen",
        "weights.source is 'none'",
    ),
    (
        "prescreen_baselines_keep_everything",
        _replace("trials: 4,", "trials: 4, prescreen: {keep_top: 1},").replace(
            "unfreeze: frozen}]", "unfreeze: frozen}, {backbone: test_vit, unfreeze: frozen}]"
        ),
        "search.prescreen.keep_top",
        "baselines name every backbone choice",
    ),
]


@pytest.mark.parametrize("content,field,words", [c[1:] for c in BAD_SPECS], ids=[c[0] for c in BAD_SPECS])
def test_bad_spec_exits_2_with_one_line_and_writes_nothing(write_spec, capsys, monkeypatch, content, field, words):
    path = write_spec(content)
    monkeypatch.chdir(path.parent)  # where the sweep would put runs/ and mlflow.db
    for command in ("validate", "sweep"):
        assert main([command, str(path)]) == 2
        out, err = capsys.readouterr()
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith(f"error: {path}")
        if field:
            assert f": {field}:" in lines[0]
        assert words in lines[0]
        assert "Traceback" not in err and out == ""
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_classes_absent_from_the_image_folder(write_spec, capsys, monkeypatch, tmp_path):
    from PIL import Image

    for name in ("cat", "dog"):
        (tmp_path / "pets" / name).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "pets" / name / "0.png")
    path = write_spec(GOOD + f"data: {{dataset: {{imagefolder: {tmp_path / 'pets'}}}, classes: [cat, cow]}}\n")
    monkeypatch.chdir(tmp_path)
    for command in ("validate", "sweep"):
        assert main([command, str(path)]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert "data" in line and "class 'cow' has no folder" in line and "cat" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pets", "spec.yaml"]


def test_missing_file_is_a_user_error(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_validate_accepts_good_spec_and_lists_backbones(write_spec, capsys):
    assert main(["validate", str(write_spec(GOOD))]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "test_resnet" in out and "test_vit" in out


def test_validate_builds_backbones_and_reports_incompatible_input(write_spec, capsys):
    # vit_tiny_patch16_224 needs 224-pixel input; at 32x32 its position embedding does not fit.
    path = write_spec(GOOD.replace("test_vit]", "vit_tiny_patch16_224]") + "data: {image_size: 32}\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "space.backbone" in err and "vit_tiny_patch16_224 cannot run on 32x32" in err


@pytest.mark.parametrize(
    "storage,words",
    [
        ("gs://bucket/runs", "s3://bucket/prefix"),
        ("s3://AKIAEXAMPLE:hunter2@bucket/runs", "credentials do not belong in the spec"),
    ],
)
def test_storage_uris(write_spec, capsys, storage, words):
    assert main(["validate", str(write_spec(GOOD + f"storage: {storage}\n"))]) == 2
    err = capsys.readouterr().err
    assert "storage" in err and words in err and "hunter2" not in err


@pytest.mark.parametrize(
    "content,field,instead",
    [
        (GOOD + "mlflow: {tracking_uri: 'https://al:hunter2@mlflow.example.com'}\n", "mlflow.tracking_uri", "MLFLOW"),
        (
            _replace("search: {trials: 4,", "search: {trials: 4, study_storage: 'postgresql://op:hunter2@db/optuna',"),
            "search.study_storage",
            "PGPASSWORD",
        ),
    ],
)
def test_passwords_in_the_spec_are_refused_without_echoing_them(write_spec, capsys, content, field, instead):
    assert main(["validate", str(write_spec(content))]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f": {field}: credentials do not belong in the spec" in line and instead in line
    assert "hunter2" not in line


@pytest.mark.parametrize(
    "entry", ["{type: float, low: 0.0, high: 2.5}", "{type: categorical, choices: [0.5, 1.5]}", "1.5"]
)
def test_fractional_transfer_layers_above_one_is_rejected(write_spec, entry):
    with pytest.raises(SpecError, match="fraction of the layer groups, so it must be <= 1"):
        load_spec(write_spec(GOOD + f"  transfer_layers: {entry}\n"))


def test_defaulted_fields_do_not_change_the_spec_hash(write_spec):
    plain = load_spec(write_spec(GOOD, "a.yaml")).spec_hash()
    explicit = load_spec(write_spec(GOOD.replace("trials: 4", "trials: 4, max_failures: 2"), "b.yaml")).spec_hash()
    assert plain == explicit


@pytest.mark.parametrize(
    "entry,words",
    [
        ("feature_cache: 1", "must be true or false, got 1"),
        ("channels_last: {type: categorical, choices: [true, 0]}", "must be true or false, got 0"),
        ("feature_cache: {type: int, low: 0, high: 1}", "choices: [true, false]"),
        ("precision: fp16", "must be one of ['bf16', 'fp32']"),
    ],
)
def test_switches_take_true_or_false_and_precision_a_known_dtype(write_spec, entry, words):
    with pytest.raises(SpecError, match=re.escape(words)):
        load_spec(write_spec(GOOD + f"  {entry}\n"))
    spec = load_spec(write_spec(GOOD + "  feature_cache: {type: categorical, choices: [true, false]}\n", "ok.yaml"))
    assert spec.space["feature_cache"].choices == [True, False]
