"""The hostile-input corpus: specs, image folders and weights files a user or an attacker may feed
`orchestrator`, each of which must be refused in one clear line (test_hostile_inputs.py).

A case is data: its spec (text, or a function of a scratch directory that builds files and
returns the text), the field the line must name (None: the file as a whole), words the line
must contain, and whether `sweep` is tried too. Add a case by appending to CASES.
"""

from __future__ import annotations

import io
import json
import os
import struct
import textwrap
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from orchestrator.errors import shorten

BASE = textwrap.dedent("""\
    experiment: hostile
    weights: {source: none}
    search: {trials: 4, baselines: [{backbone: test_resnet, unfreeze: frozen}]}
    early_stopping: {max_epochs: 3, grace_period: 1}
    space:
      backbone: {type: categorical, choices: [test_resnet, test_vit]}
      unfreeze: {type: categorical, choices: [frozen, gradual]}
      unfreeze_every: {type: int, low: 1, high: 2, when: {unfreeze: gradual}}
      lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
      batch_size: 16
""")

Spec = str | bytes | Callable[[Path], str | bytes]


@dataclass(frozen=True)
class Case:
    id: str
    category: str
    spec: Spec
    field: str | None  # the field the line names after the file; None: a problem of the file as a whole
    words: str  # what the line must say
    sweep: bool = False  # also run `sweep` in an empty directory: refused the same way, nothing written
    commands: tuple[str, ...] = ("validate",)
    args: tuple[str, ...] = ()  # extra command-line arguments (they imply `sweep`)
    secret: str | None = None  # must not appear in the line
    spec_path: Callable[[Path, bytes], Path] | None = None  # puts the spec somewhere else than <scratch>/spec.yaml


def replace(old: str, new: str, base: str = BASE) -> str:
    assert old in base, old
    return base.replace(old, new, 1)


def add(text: str) -> str:
    return BASE + text


def space(entry: str) -> str:
    return BASE + f"  {entry}\n"


def quoted(text: str) -> str:
    """`text` as a YAML double-quoted scalar (JSON's escapes are YAML's)."""
    return json.dumps(text)


# -- builders of hostile files -------------------------------------------------------------------


def png(size=(16, 16), mode="RGB", seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    image = Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).convert(mode)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def jpeg(size=(32, 32)) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(out, "JPEG")
    return out.getvalue()


def tiff(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, "TIFF")
    return out.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int) -> bytes:
    """A few hundred bytes that claim width x height 8-bit gray pixels (a decompression bomb)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = _chunk(b"IDAT", zlib.compress(b"\0" * 64))
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + pixels + _chunk(b"IEND", b"")


def png_with_corrupt_pixels() -> bytes:
    """A PNG whose chunks and CRCs are all valid (Pillow's verify() passes) but whose pixel data is garbage."""
    data, out, pos = png((64, 64)), bytearray(b"\x89PNG\r\n\x1a\n"), 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, payload = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IDAT":
            payload = payload[:2] + bytes(len(payload) - 2)
        out += _chunk(kind, payload)
        pos += 12 + length
    return bytes(out)


def tiff_with_samples_per_pixel(samples: int) -> bytes:
    """A little-endian TIFF whose SamplesPerPixel tag says `samples` (Pillow logs an error, then refuses it)."""
    data = bytearray(tiff(np.zeros((4, 4, 3), dtype=np.uint8)))
    (ifd,) = struct.unpack("<I", data[4:8])
    (count,) = struct.unpack("<H", data[ifd : ifd + 2])
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        if struct.unpack("<H", data[entry : entry + 2])[0] == 277:
            data[entry + 8 : entry + 10] = struct.pack("<H", samples)
    return bytes(data)


def image_folder(tmp: Path, name: str = "pets", classes=("cat", "dog"), n: int = 3) -> Path:
    root = tmp / name
    for i, cls in enumerate(classes):
        (root / cls).mkdir(parents=True)
        for j in range(n):
            (root / cls / f"{j}.png").write_bytes(png(seed=10 * i + j))
    return root


def folder_spec(root: Path | str) -> str:
    return add(f"data: {{dataset: {{imagefolder: {quoted(str(root))}}}, train_per_class: 1}}\n")


def with_folder(breakage: Callable[[Path], object], **kwargs) -> Callable[[Path], str]:
    """A spec naming a small valid image folder that `breakage` then spoils."""

    def build(tmp: Path) -> str:
        root = image_folder(tmp, **kwargs)
        breakage(root)
        return folder_spec(root)

    return build


def bad_image(name: str, content: bytes) -> Callable[[Path], str]:
    return with_folder(lambda root: (root / "cat" / name).write_bytes(content))


def weights_spec(path: Path | str) -> str:
    return textwrap.dedent(f"""\
        experiment: hostile
        weights: {{source: {quoted(f"file:{path}")}}}
        search: {{trials: 2}}
        early_stopping: {{max_epochs: 2}}
        space:
          backbone: test_resnet
          lr: {{type: float, low: 1.0e-4, high: 1.0e-2, log: true}}
    """)


def weights_file(name: str, content: bytes | Callable[[Path], object]) -> Callable[[Path], str]:
    def build(tmp: Path) -> str:
        path = tmp / name
        content(path) if callable(content) else path.write_bytes(content)
        return weights_spec(path)

    return build


def safetensors_bytes(header: dict | bytes, data: bytes = b"", claimed: int | None = None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if claimed is None else claimed) + raw + data


def pickled_payload(path: Path) -> None:
    """A torch checkpoint that runs code when unpickled (refused by weights_only loading)."""
    import torch

    torch.save({"state_dict": {"w": torch.zeros(1)}, "evil": _Payload(str(path) + ".ran")}, path)


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def fifo(path: Path) -> None:
    os.mkfifo(path)


def _link(target: Path | str, link: Path) -> None:
    link.symlink_to(target)


def _link_outside(root: Path) -> None:
    outside = root.parent / "elsewhere"
    outside.mkdir()
    (outside / "secret.png").write_bytes(png())
    _link(outside / "secret.png", root / "cat" / "linked.png")


def _class_folder_outside(root: Path) -> None:
    outside = root.parent / "other-dogs"
    outside.mkdir()
    (outside / "0.png").write_bytes(png())
    _link(outside, root / "wolf")


def _reached_twice(root: Path) -> None:
    (root / "cat" / "again").symlink_to(root / "dog")


# -- where the spec file itself lives -------------------------------------------------------------


def spec_named(*parts: str) -> Callable[[Path, bytes], Path]:
    def put(tmp: Path, content: bytes) -> Path:
        path = tmp.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        return path

    return put


def no_spec_at(name: str) -> Callable[[Path, bytes], Path]:
    return lambda tmp, content: tmp / name


def directory_at(name: str) -> Callable[[Path, bytes], Path]:
    return lambda tmp, content: (tmp / name).mkdir() or tmp / name


def fifo_at(name: str) -> Callable[[Path, bytes], Path]:
    return lambda tmp, content: fifo(tmp / name) or tmp / name


def deep(n: int, open_: str, close: str) -> str:
    return "experiment: x\nspace: " + open_ * n + close * n + "\n"


BILLION_LAUGHS = "experiment: x\nspace:\n  lr: 0.1\n" + "".join(
    f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10) if i else ', '.join(['lol'] * 10)}]\n" for i in range(9)
)

CASES: list[Case] = [
    # -- YAML structure ---------------------------------------------------------------------------
    Case("deep_flow_sequence", "yaml", deep(10_000, "[", "]"), None, "nested more than 20 levels", sweep=True),
    Case("deep_flow_mapping", "yaml", deep(5_000, "{a: ", "}"), None, "nested more than 20 levels"),
    Case(
        "deep_block_mapping",
        "yaml",
        "experiment: x\nspace:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 60)),
        None,
        "nested more than 20 levels",
    ),
    Case("billion_laughs", "yaml", BILLION_LAUGHS, None, "expands to more than 100,000 values", sweep=True),
    Case(
        "laughs_in_choices",
        "yaml",
        "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        "experiment: x\nspace: {augment: {type: categorical, choices: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]}}\n",
        None,
        "expands to more than",
    ),
    Case("alias_cycle", "yaml", "experiment: &a [*a]\n", None, "refers to a node that contains it"),
    Case("alias_cycle_mapping", "yaml", "space: &s {lr: *s}\nexperiment: x\n", None, "contains it"),
    Case("duplicate_top_key", "yaml", add("experiment: again\n"), "experiment", "duplicate key", sweep=True),
    Case(
        "duplicate_nested_key",
        "yaml",
        replace("search: {trials: 4,", "search: {trials: 4, trials: 1000000,"),
        "search.trials",
        "duplicate key",
    ),
    Case("duplicate_space_entry", "yaml", space("lr: 0.1"), "space.lr", "duplicate key"),
    Case(
        "duplicate_in_baseline",
        "yaml",
        replace("unfreeze: frozen}]", "unfreeze: frozen, unfreeze: gradual}]"),
        "search.baselines[0].unfreeze",
        "duplicate key",
    ),
    Case("key_read_as_bool", "yaml", add("on: 1\n"), None, "is not a name"),
    Case("key_read_as_int", "yaml", add("1: x\n"), None, "is not a name"),
    Case("key_read_as_null", "yaml", add("~: x\n"), None, "is not a name"),
    Case("key_is_a_list", "yaml", add("? [a, b]\n: c\n"), None, "is not a name"),
    Case("nested_key_read_as_bool", "yaml", space("yes: 1"), "space", "is not a name"),
    Case("two_documents", "yaml", BASE + "---\n" + BASE, None, "YAML syntax error"),
    Case(
        "python_object_tag",
        "yaml",
        add("x: !!python/object/apply:os.system ['touch pwned']\n"),
        None,
        "tags other than plain mappings",
    ),
    Case(
        "custom_tag",
        "yaml",
        replace("experiment: hostile", "experiment: !vault abc"),
        None,
        "tags other than plain mappings",
    ),
    Case("undefined_alias", "yaml", replace("experiment: hostile", "experiment: *nothing"), None, "undefined alias"),
    Case("unclosed_flow", "yaml", "experiment: x\nspace: {lr: [1, 2\n", None, "YAML syntax error at line"),
    Case("tab_indentation", "yaml", "experiment: x\nspace:\n\tlr: 0.1\n", None, "YAML syntax error"),
    Case("control_character", "yaml", "experiment: x\x07y\nspace: {lr: 0.1}\n", None, "YAML syntax error"),
    Case("binary_file", "yaml", b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", None, "not a text file", sweep=True),
    Case("utf16_file", "yaml", BASE.encode("utf-16"), None, "not a text file"),
    Case("huge_file", "yaml", BASE + "# " + "x" * (1 << 20) + "\n", None, "larger than 1024 KiB"),
    Case("empty_file", "yaml", "", None, "empty"),
    Case("only_comments", "yaml", "# experiment: x\n# space: {}\n", None, "holds no settings"),
    Case("top_level_list", "yaml", "- a\n- b\n", None, "expected a YAML mapping"),
    Case("top_level_scalar", "yaml", "hello\n", None, "expected a YAML mapping at the top level, got str"),
    Case("spec_is_a_directory", "yaml", BASE, None, "is a directory", spec_path=directory_at("d.yaml")),
    Case("spec_is_a_fifo", "yaml", BASE, None, "not a regular file", spec_path=fifo_at("f.yaml")),
    Case("spec_missing", "yaml", BASE, None, "no such file", spec_path=no_spec_at("missing.yaml"), sweep=True),
    Case("spec_name_too_long", "yaml", BASE, None, "File name too long", spec_path=no_spec_at("s" * 300 + ".yaml")),
    # -- types ------------------------------------------------------------------------------------
    Case("trials_true", "types", replace("trials: 4", "trials: true"), "search.trials", "valid integer", sweep=True),
    Case("trials_string", "types", replace("trials: 4", "trials: '2'"), "search.trials", "valid integer"),
    Case("trials_float", "types", replace("trials: 4", "trials: 2.0"), "search.trials", "valid integer"),
    Case(
        "concurrent_bool",
        "types",
        replace("trials: 4,", "trials: 4, concurrent: yes,"),
        "search.concurrent",
        "valid integer",
    ),
    Case("seed_string", "types", replace("trials: 4,", "trials: 4, seed: '0',"), "search.seed", "valid integer"),
    Case("log_yes_string", "types", replace("log: true", "log: 'yes'"), "space.lr.log", "valid boolean"),
    Case("log_int", "types", replace("log: true", "log: 1"), "space.lr.log", "valid boolean"),
    Case("low_string", "types", replace("low: 1.0e-4", "low: '1.0e-4'"), "space.lr.low", "valid number"),
    Case(
        "int_low_float",
        "types",
        replace("low: 1, high: 2", "low: 1.0, high: 2"),
        "space.unfreeze_every.low",
        "valid integer",
    ),
    Case(
        "int_step_bool",
        "types",
        replace("low: 1, high: 2", "low: 1, high: 2, step: true"),
        "space.unfreeze_every.step",
        "valid integer",
    ),
    Case("image_size_float", "types", add("data: {image_size: 32.0}\n"), "data.image_size", "valid integer"),
    Case("experiment_int", "types", replace("experiment: hostile", "experiment: 123"), "experiment", "valid string"),
    Case(
        "experiment_date",
        "types",
        replace("experiment: hostile", "experiment: 2024-01-01"),
        "experiment",
        "valid string",
    ),
    Case(
        "experiment_binary",
        "types",
        replace("experiment: hostile", "experiment: !!binary aGk="),
        "experiment",
        "valid string",
    ),
    Case("cpu_string", "types", add("resources: {cpu: '1'}\n"), "resources.cpu", "valid number"),
    Case("gpu_bool", "types", add("resources: {gpu: true}\n"), "resources.gpu", "valid number"),
    Case("mode_int", "types", add("objective: {mode: 1}\n"), "objective.mode", "'max' or 'min'"),
    Case("class_float", "types", add("data: {classes: [5.5, 6]}\n"), "data.classes[0]", "a class is a digit"),
    Case("class_bool", "types", add("data: {classes: [true, false]}\n"), "data.classes[0]", "a class is a digit"),
    Case("fixed_mapping_without_type", "types", space("dropout: {low: 0.1}"), "space.dropout", "needs `type"),
    Case("fixed_list", "types", replace("batch_size: 16", "batch_size: [16, 32]"), "space.batch_size", "not a list"),
    Case(
        "choice_is_a_list",
        "types",
        replace("[frozen, gradual]", "[frozen, [1]]"),
        "space.unfreeze.choices[1]",
        "not a list",
    ),
    Case(
        "choice_is_a_mapping",
        "types",
        replace("[frozen, gradual]", "[{a: 1}, gradual]"),
        "space.unfreeze.choices[0]",
        "not a mapping",
    ),
    Case("choices_not_a_list", "types", replace("[frozen, gradual]", "frozen"), "space.unfreeze.choices", "valid list"),
    Case(
        "baseline_value_list",
        "types",
        replace("unfreeze: frozen}]", "unfreeze: [frozen]}]"),
        "search.baselines[0].unfreeze",
        "not a list",
    ),
    Case(
        "when_value_mapping",
        "types",
        replace("when: {unfreeze: gradual}", "when: {unfreeze: {a: 1}}"),
        "space.unfreeze_every.when.unfreeze",
        "not a mapping",
    ),
    Case(
        "search_is_a_list",
        "types",
        replace("search: {trials: 4, baselines: [{backbone: test_resnet, unfreeze: frozen}]}", "search: [1]"),
        "search",
        "must be a mapping",
        sweep=True,
    ),
    Case(
        "search_list_with_trials_flag",
        "types",
        replace("search: {trials: 4, baselines: [{backbone: test_resnet, unfreeze: frozen}]}", "search: [1]"),
        "search",
        "must be a mapping",
        commands=("sweep",),
        args=("--trials", "3"),
    ),
    Case(
        "early_stopping_scalar_with_flag",
        "types",
        replace("early_stopping: {max_epochs: 3, grace_period: 1}", "early_stopping: asha"),
        "early_stopping",
        "must be a mapping",
        commands=("sweep",),
        args=("--max-epochs", "3"),
    ),
    Case("space_is_a_list", "types", "experiment: x\nspace: [lr, dropout]\n", "space", "must be a mapping"),
    Case("dataset_int", "types", add("data: {dataset: 5}\n"), "data.dataset", "`digits` or `{imagefolder: PATH}`"),
    Case("dataset_unknown_name", "types", add("data: {dataset: cifar10}\n"), "data.dataset", "'digits'"),
    Case(
        "imagefolder_int",
        "types",
        add("data: {dataset: {imagefolder: 5}}\n"),
        "data.dataset.imagefolder",
        "valid string",
    ),
    Case(
        "weights_source_int",
        "types",
        replace("weights: {source: none}", "weights: {source: 1}"),
        "weights.source",
        "valid string",
    ),
    # -- NaN and infinities -----------------------------------------------------------------------
    Case("fixed_nan", "nan", space("dropout: .nan"), "space.dropout", "finite number", sweep=True),
    Case("low_nan", "nan", replace("low: 1.0e-4", "low: .nan"), "space.lr.low", "finite number"),
    Case("high_inf", "nan", replace("high: 1.0e-2", "high: .inf"), "space.lr.high", "finite number"),
    Case(
        "low_minus_inf",
        "nan",
        space("weight_decay: {type: float, low: -.inf, high: 0.1}"),
        "space.weight_decay.low",
        "finite number",
    ),
    Case(
        "step_nan",
        "nan",
        space("dropout: {type: float, low: 0.0, high: 0.5, step: .nan}"),
        "space.dropout.step",
        "finite number",
    ),
    Case(
        "choice_nan",
        "nan",
        space("dropout: {type: categorical, choices: [0.1, .NaN]}"),
        "space.dropout.choices[1]",
        "finite number",
    ),
    Case(
        "baseline_nan",
        "nan",
        replace("unfreeze: frozen}]", "unfreeze: frozen, lr: .nan}]"),
        "search.baselines[0].lr",
        "finite number",
    ),
    Case(
        "condition_nan",
        "nan",
        space("dropout: {type: float, low: 0.0, high: 0.5, when: {batch_size: .nan}}"),
        "space.dropout.when.batch_size",
        "finite number",
    ),
    Case(
        "reduction_factor_inf",
        "nan",
        replace("grace_period: 1}", "grace_period: 1, reduction_factor: .inf}"),
        "early_stopping.reduction_factor",
        "finite number",
        sweep=True,
    ),
    Case(
        "reduction_factor_nan",
        "nan",
        replace("grace_period: 1}", "grace_period: 1, reduction_factor: .nan}"),
        "early_stopping.reduction_factor",
        "finite number",
    ),
    Case("cpu_inf", "nan", add("resources: {cpu: .inf}\n"), "resources.cpu", "finite number"),
    Case("gpu_nan", "nan", add("resources: {gpu: .nan}\n"), "resources.gpu", "finite number"),
    Case(
        "val_fraction_nan",
        "nan",
        add("data: {dataset: {imagefolder: /x, val_fraction: .nan}}\n"),
        "data.dataset.val_fraction",
        "finite number",
    ),
    Case(
        "pretrain_lr_inf",
        "nan",
        replace("weights: {source: none}", "weights: {source: pretrain, pretrain: {lr: .inf}}"),
        "weights.pretrain.lr",
        "finite number",
    ),
    # -- limits that protect the machine ----------------------------------------------------------
    Case(
        "seed_negative",
        "limits",
        replace("trials: 4,", "trials: 4, seed: -1,"),
        "search.seed",
        "greater than or equal to 0",
        sweep=True,
    ),
    Case(
        "seed_beyond_32_bits",
        "limits",
        replace("trials: 4,", "trials: 4, seed: 4294967296,"),
        "search.seed",
        "4294967295",
    ),
    Case("trials_million", "limits", replace("trials: 4", "trials: 1000000"), "search.trials", "100000", sweep=True),
    Case(
        "trials_astronomic",
        "limits",
        replace("trials: 4", "trials: 1000000000000000000000000000000"),
        "search.trials",
        "100000",
    ),
    Case(
        "concurrent_million",
        "limits",
        replace("trials: 4,", "trials: 4, concurrent: 1000000,"),
        "search.concurrent",
        "4096",
    ),
    Case(
        "max_failures_huge",
        "limits",
        replace("trials: 4,", "trials: 4, max_failures: 100000,"),
        "search.max_failures",
        "100",
    ),
    Case(
        "max_epochs_billion",
        "limits",
        replace("max_epochs: 3", "max_epochs: 1000000000"),
        "early_stopping.max_epochs",
        "10000",
    ),
    Case(
        "grace_period_billion",
        "limits",
        replace("grace_period: 1", "grace_period: 1000000000"),
        "early_stopping.grace_period",
        "10000",
    ),
    Case(
        "pretrain_epochs_billion",
        "limits",
        replace("weights: {source: none}", "weights: {source: pretrain, pretrain: {epochs: 1000000000}}"),
        "weights.pretrain.epochs",
        "10000",
    ),
    Case(
        "reduction_factor_barely_above_one",
        "limits",
        replace("grace_period: 1}", "grace_period: 1, reduction_factor: 1.0000001}"),
        "early_stopping.reduction_factor",
        "1.5",
        sweep=True,
    ),
    Case(
        "reduction_factor_one",
        "limits",
        replace("grace_period: 1}", "grace_period: 1, reduction_factor: 1}"),
        "early_stopping.reduction_factor",
        "1.5",
    ),
    Case(
        "reduction_factor_huge",
        "limits",
        replace("grace_period: 1}", "grace_period: 1, reduction_factor: 1.0e9}"),
        "early_stopping.reduction_factor",
        "100",
    ),
    Case("cpu_million", "limits", add("resources: {cpu: 1000000}\n"), "resources.cpu", "1024"),
    Case("cpu_below_ray_precision", "limits", add("resources: {cpu: 1.0e-9}\n"), "resources.cpu", "0.0001"),
    Case("gpu_one_and_a_half", "limits", add("resources: {gpu: 1.5}\n"), "resources.gpu", "whole GPUs"),
    Case("gpu_hundred", "limits", add("resources: {gpu: 100}\n"), "resources.gpu", "16"),
    Case(
        "batch_size_billion", "limits", replace("batch_size: 16", "batch_size: 1000000000"), "space.batch_size", "65536"
    ),
    Case("image_size_million", "limits", add("data: {image_size: 1000000}\n"), "data.image_size", "1024"),
    Case("warmup_epochs_huge", "limits", space("warmup_epochs: 100000000"), "space.warmup_epochs", "10000"),
    Case("trial_seed_huge", "limits", space("seed: 99999999999"), "space.seed", "4294967295"),
    Case(
        "transfer_layers_huge",
        "limits",
        space("transfer_layers: {type: int, low: 0, high: 1000000000000}"),
        "space.transfer_layers.high",
        "10000",
    ),
    Case(
        "too_many_choices",
        "limits",
        space(f"seed: {{type: categorical, choices: {list(range(1001))}}}"),
        "space.seed.choices",
        "at most 1000",
    ),
    Case(
        "too_many_space_entries",
        "limits",
        "experiment: x\nspace:\n" + "".join(f"  p{i}: 1\n" for i in range(65)),
        "space",
        "at most 64",
    ),
    Case(
        "more_baselines_than_trials",
        "limits",
        replace("trials: 4", "trials: 1").replace(
            "unfreeze: frozen}]", "unfreeze: frozen}, {backbone: test_vit, unfreeze: frozen}]"
        ),
        "search.baselines",
        "2 baselines but 1 trials",
    ),
    Case(
        "keep_top_million",
        "limits",
        replace("trials: 4,", "trials: 4, prescreen: {keep_top: 1000000},"),
        "search.prescreen.keep_top",
        "1000",
    ),
    Case(
        "experiment_name_too_long",
        "limits",
        replace("experiment: hostile", "experiment: " + "e" * 101),
        "experiment",
        "at most 100 characters",
    ),
    Case(
        "imagefolder_path_5000_chars",
        "limits",
        add(f"data: {{dataset: {{imagefolder: /{'a' * 5000}}}}}\n"),
        "data.dataset.imagefolder",
        "at most 4096 characters",
        sweep=True,
    ),
    Case(
        "imagefolder_name_too_long",
        "limits",
        add(f"data: {{dataset: {{imagefolder: /tmp/{'a' * 300}}}}}\n"),
        "data.dataset.imagefolder",
        "a name of 300 bytes",
    ),
    Case(
        "weights_path_5000_chars",
        "limits",
        weights_spec("/" + "w/" * 2500 + "w.pth"),
        "weights.source",
        "at most 4096 characters",
        sweep=True,
    ),
    Case(
        "weights_name_too_long",
        "limits",
        weights_spec("/tmp/" + "w" * 300 + ".pth"),
        "weights.source",
        "a name of 304 bytes",
        sweep=True,
    ),
    Case(
        "storage_name_too_long",
        "limits",
        add(f"storage: /tmp/{'r' * 300}\n"),
        "storage",
        "a name of 300 bytes",
        sweep=True,
    ),
    Case(
        "journal_name_too_long",
        "limits",
        replace("trials: 4,", f"trials: 4, study_storage: /tmp/{'j' * 300}.journal,"),
        "search.study_storage",
        "a name of 308 bytes",
    ),
    # -- names ------------------------------------------------------------------------------------
    Case(
        "experiment_pretrained",
        "names",
        replace("experiment: hostile", "experiment: pretrained"),
        "experiment",
        "reserved",
        sweep=True,
    ),
    Case(
        "experiment_pretrained_capitals",
        "names",
        replace("experiment: hostile", "experiment: PreTrained"),
        "experiment",
        "reserved",
    ),
    Case(
        "experiment_dot_dot",
        "names",
        replace("experiment: hostile", "experiment: '..'"),
        "experiment",
        "should match pattern",
    ),
    Case(
        "experiment_slash",
        "names",
        replace("experiment: hostile", "experiment: a/../../etc"),
        "experiment",
        "should match pattern",
        sweep=True,
    ),
    Case(
        "experiment_space",
        "names",
        replace("experiment: hostile", "experiment: my sweep"),
        "experiment",
        "should match pattern",
    ),
    Case(
        "experiment_empty",
        "names",
        replace("experiment: hostile", "experiment: ''"),
        "experiment",
        "should match pattern",
    ),
    Case(
        "experiment_bidi_override",
        "names",
        replace("experiment: hostile", 'experiment: "ab\\u202ecd"'),
        "experiment",
        "should match pattern",
    ),
    Case(
        "registered_model_space",
        "names",
        add("mlflow: {register_best_as: 'best model'}\n"),
        "mlflow.register_best_as",
        "should match pattern",
    ),
    Case("unknown_key_typo", "names", replace("trials: 4", "tirals: 4"), "search.tirals", "did you mean 'trials'"),
    Case(
        "unknown_backbone",
        "names",
        replace("test_vit]", "resnet5O]"),
        "space.backbone.choices[1]",
        "did you mean 'resnet50'",
    ),
    # -- URIs and secrets -------------------------------------------------------------------------
    Case(
        "tracking_password",
        "uris",
        add("mlflow: {tracking_uri: 'https://al:hunter2@mlflow.example.com'}\n"),
        "mlflow.tracking_uri",
        "credentials do not belong in the spec",
        secret="hunter2",
        sweep=True,
    ),
    Case(
        "tracking_query_password",
        "uris",
        add("mlflow: {tracking_uri: 'https://mlflow.example.com/?password=hunter2'}\n"),
        "mlflow.tracking_uri",
        "password=...",
        secret="hunter2",
        sweep=True,
    ),
    Case(
        "tracking_query_access_token",
        "uris",
        add("mlflow: {tracking_uri: 'https://m.example.com/?x=1&access_token=hunter2'}\n"),
        "mlflow.tracking_uri",
        "access_token=...",
        secret="hunter2",
    ),
    Case(
        "tracking_token_as_user",
        "uris",
        add("mlflow: {tracking_uri: 'https://ghp_hunter2hunter2hunter2hunter2hunter2@m.example.com'}\n"),
        "mlflow.tracking_uri",
        "looks like a token",
        secret="hunter2",
    ),
    Case(
        "tracking_hex_token_as_user",
        "uris",
        add("mlflow: {tracking_uri: 'https://0123456789abcdef0123456789abcdef01234567@m.example.com'}\n"),
        "mlflow.tracking_uri",
        "looks like a token",
        secret="0123456789abcdef",
    ),
    Case(
        "tracking_fragment",
        "uris",
        add("mlflow: {tracking_uri: 'https://m.example.com/#hunter2'}\n"),
        "mlflow.tracking_uri",
        "fragment",
        secret="hunter2",
    ),
    Case(
        "tracking_file_store_path",
        "uris",
        add("mlflow: {tracking_uri: ./mlruns}\n"),
        "mlflow.tracking_uri",
        "file store is deprecated",
    ),
    Case(
        "tracking_file_uri",
        "uris",
        add("mlflow: {tracking_uri: 'FILE:///tmp/mlruns'}\n"),
        "mlflow.tracking_uri",
        "file store is deprecated",
    ),
    Case(
        "tracking_ftp",
        "uris",
        add("mlflow: {tracking_uri: 'ftp://m.example.com'}\n"),
        "mlflow.tracking_uri",
        "unsupported scheme ftp://",
    ),
    Case(
        "tracking_port_out_of_range",
        "uris",
        add("mlflow: {tracking_uri: 'http://m.example.com:99999'}\n"),
        "mlflow.tracking_uri",
        "Port out of range",
    ),
    Case(
        "tracking_broken_ipv6",
        "uris",
        add("mlflow: {tracking_uri: 'http://[::1'}\n"),
        "mlflow.tracking_uri",
        "not a valid URL",
    ),
    Case(
        "tracking_without_host",
        "uris",
        add("mlflow: {tracking_uri: 'https:///path'}\n"),
        "mlflow.tracking_uri",
        "needs a host",
    ),
    Case(
        "study_password",
        "uris",
        replace("trials: 4,", "trials: 4, study_storage: 'postgresql://op:hunter2@db/optuna',"),
        "search.study_storage",
        "PGPASSWORD",
        secret="hunter2",
        sweep=True,
    ),
    Case(
        "study_query_password",
        "uris",
        replace("trials: 4,", "trials: 4, study_storage: 'postgresql://op@db/optuna?password=hunter2',"),
        "search.study_storage",
        "PGPASSWORD",
        secret="hunter2",
    ),
    Case(
        "study_sslpassword",
        "uris",
        replace("trials: 4,", "trials: 4, study_storage: 'POSTGRESQL://op@db/o?sslmode=require&sslpassword=hunter2',"),
        "search.study_storage",
        "sslpassword=...",
        secret="hunter2",
    ),
    Case(
        "study_password_with_slash",
        "uris",
        replace("trials: 4,", "trials: 4, study_storage: 'mysql://op:hun/ter2@db/optuna',"),
        "search.study_storage",
        "credentials",
        secret="ter2",
    ),
    Case(
        "study_redis",
        "uris",
        replace("trials: 4,", "trials: 4, study_storage: 'redis://cache:6379',"),
        "search.study_storage",
        "expected an sqlite://, postgresql:// or mysql:// URL",
    ),
    Case(
        "study_bad_port",
        "uris",
        replace("trials: 4,", "trials: 4, study_storage: 'postgresql://db:abc/o',"),
        "search.study_storage",
        "Port could not be cast",
    ),
    Case(
        "study_not_a_journal",
        "uris",
        replace("trials: 4,", "trials: 4, study_storage: optuna.db,"),
        "search.study_storage",
        "ending in .journal",
    ),
    Case("storage_gs", "uris", add("storage: gs://bucket/runs\n"), "storage", "s3://bucket/prefix"),
    Case("storage_http", "uris", add("storage: 'HTTP://example.com/runs'\n"), "storage", "s3://bucket/prefix"),
    Case(
        "storage_s3_keys",
        "uris",
        add("storage: 's3://AKIAEXAMPLE:hunter2@bucket/runs'\n"),
        "storage",
        "AWS_SECRET_ACCESS_KEY",
        secret="hunter2",
        sweep=True,
    ),
    Case(
        "storage_s3_signed_query",
        "uris",
        add("storage: 's3://bucket/runs?X-Amz-Signature=hunter2'\n"),
        "storage",
        "X-Amz-Signature=...",
        secret="hunter2",
    ),
    Case("storage_s3_without_bucket", "uris", add("storage: 'S3://'\n"), "storage", "needs a bucket"),
    Case(
        "storage_s3_query", "uris", add("storage: 's3://bucket/runs?region=x'\n"), "storage", "s3://bucket/prefix only"
    ),
    Case("storage_nul", "uris", add('storage: "runs\\0x"\n'), "storage", "NUL", sweep=True),
    Case("storage_empty", "uris", add("storage: ''\n"), "storage", "empty"),
    Case(
        "storage_unknown_user_home",
        "uris",
        add("storage: '~no_such_user_4b1d/runs'\n"),
        "storage",
        "home directory is unknown",
        sweep=True,
    ),
    Case(
        "imagefolder_nul",
        "uris",
        add('data: {dataset: {imagefolder: "/tmp/a\\0b"}}\n'),
        "data.dataset.imagefolder",
        "NUL",
    ),
    Case(
        "imagefolder_unknown_user_home",
        "uris",
        add("data: {dataset: {imagefolder: '~no_such_user_4b1d/x'}}\n"),
        "data.dataset.imagefolder",
        "home directory is unknown",
    ),
    Case(
        "weights_unknown_user_home",
        "uris",
        weights_spec("~no_such_user_4b1d/w.pth"),
        "weights.source",
        "home directory is unknown",
    ),
    # -- conditions and baselines -----------------------------------------------------------------
    Case(
        "when_on_itself",
        "conditions",
        replace("when: {unfreeze: gradual}", "when: {unfreeze_every: 1}"),
        "space.unfreeze_every.when.unfreeze_every",
        "conditional on itself",
    ),
    Case(
        "when_cycle",
        "conditions",
        space("augment: {type: categorical, choices: [none, light], when: {hflip: 0.5}}")
        + "  hflip: {type: categorical, choices: [0.0, 0.5], when: {augment: light}}\n",
        "space",
        "cycle",
    ),
    Case(
        "when_lists_no_value",
        "conditions",
        replace("when: {unfreeze: gradual}", "when: {unfreeze: []}"),
        "space.unfreeze_every.when.unfreeze",
        "would never be searched",
    ),
    Case(
        "when_unknown_param",
        "conditions",
        replace("when: {unfreeze: gradual}", "when: {unfrieze: gradual}"),
        "space.unfreeze_every.when.unfrieze",
        "did you mean 'unfreeze'",
    ),
    Case(
        "choices_repeated",
        "conditions",
        replace("[frozen, gradual]", "[frozen, frozen]"),
        "space.unfreeze.choices",
        "distinct",
    ),
    Case(
        "baseline_sets_fixed_param",
        "conditions",
        replace("unfreeze: frozen}]", "unfreeze: frozen, batch_size: 16}]"),
        "search.baselines[0].batch_size",
        "fixed in space",
    ),
    Case(
        "baseline_condition_unmet",
        "conditions",
        replace("unfreeze: frozen}]", "unfreeze: frozen, unfreeze_every: 2}]"),
        "search.baselines[0].unfreeze_every",
        "only searched when",
    ),
    Case(
        "baseline_outside_range",
        "conditions",
        replace("unfreeze: frozen}]", "unfreeze: frozen, lr: 5.0}]"),
        "search.baselines[0].lr",
        "outside the space",
    ),
    Case(
        "grid_with_a_range",
        "conditions",
        replace("trials: 4,", "trials: 4, algorithm: grid,"),
        "space.unfreeze_every.type",
        "grid search needs every searched parameter categorical",
    ),
    Case("digits_class_out_of_range", "conditions", add("data: {classes: [5, 6, 12]}\n"), "data.classes", "0-9"),
    Case("classes_repeated", "conditions", add("data: {classes: [5, 5]}\n"), "data.classes", "distinct"),
    # -- messages: one printable line, bounded, whatever the input ---------------------------------
    Case(
        "value_100k_characters",
        "messages",
        replace("experiment: hostile", "experiment: " + "x" * 100_000),
        "experiment",
        "at most 100 characters",
        sweep=True,
    ),
    Case("key_100k_characters", "messages", add("k" * 100_000 + ": 1\n"), None, "YAML syntax error"),
    Case(
        "unknown_key_1000_characters",
        "messages",
        add("k" * 1000 + ": 1\n"),
        shorten("k" * 1000, 80),
        "unknown key in the top level",
    ),
    Case(
        "backbone_100k_characters",
        "messages",
        replace("test_vit]", "resnet" + "5" * 100_000 + "]"),
        "space.backbone.choices[1]",
        "unknown timm backbone",
    ),
    Case(
        "value_100k_with_spaces",
        "messages",
        replace("experiment: hostile", "experiment: '" + "ab " * 30_000 + "'"),
        "experiment",
        "at most 100 characters",
    ),
    Case(
        "ansi_escape_in_value",
        "messages",
        replace("test_vit]", quoted("\x1b[31mresnet\x1b[0m") + "]"),
        "space.backbone.choices[1]",
        "\\x1b[31mresnet",
    ),
    Case("newline_in_key", "messages", add(quoted("bad\nkey") + ": 1\n"), "bad\\nkey", "unknown key"),
    Case(
        "ansi_and_newline_in_folder",
        "messages",
        add("data: {dataset: {imagefolder: " + quoted("/tmp/no\n\x1b[2J") + "}}\n"),
        "data.dataset.imagefolder",
        "/tmp/no\\n\\x1b[2J",
        sweep=True,
    ),
    Case("newline_in_weights_path", "messages", weights_spec("/tmp/a\nb.pth"), "weights.source", "a\\nb.pth"),
    Case(
        "escapes_in_spec_file_name",
        "messages",
        replace("trials: 4", "trials: 0"),
        "search.trials",
        "greater than 0",
        spec_path=spec_named("bad\nname\x1b[31m.yaml"),
    ),
    Case(
        "undecodable_spec_file_name",
        "messages",
        replace("trials: 4", "trials: 0"),
        "search.trials",
        "greater than 0",
        spec_path=spec_named(os.fsdecode(b"spec-\xff.yaml")),
    ),
    Case(
        "long_spec_file_name",
        "messages",
        replace("trials: 4", "trials: 0"),
        "search.trials",
        "greater than 0",
        spec_path=spec_named("s" * 200, "t" * 200 + ".yaml"),
    ),
    # -- image folders ----------------------------------------------------------------------------
    Case(
        "truncated_png",
        "images",
        bad_image("trunc.png", png((64, 64))[:300]),
        "data.dataset.imagefolder",
        "trunc.png: corrupt or unreadable image",
        sweep=True,
    ),
    Case(
        "truncated_jpeg",
        "images",
        bad_image("trunc.jpg", jpeg()[:400]),
        "data.dataset.imagefolder",
        "trunc.jpg: corrupt or unreadable image",
    ),
    Case(
        "png_corrupt_pixels_valid_crc",
        "images",
        bad_image("garbage.png", png_with_corrupt_pixels()),
        "data.dataset.imagefolder",
        "garbage.png: corrupt or unreadable image",
    ),
    Case(
        "png_bomb_20000x20000",
        "images",
        bad_image("bomb.png", png_header(20_000, 20_000)),
        "data.dataset.imagefolder",
        "decompression bomb",
        sweep=True,
    ),
    Case(
        "png_bomb_10000x10000",
        "images",
        bad_image("bomb.png", png_header(10_000, 10_000)),
        "data.dataset.imagefolder",
        "10000x10000 pixels is more than the limit of 89,478,485",
    ),
    Case(
        "float_tiff",
        "images",
        bad_image("f.tif", tiff(np.random.default_rng(0).random((8, 8), dtype=np.float32))),
        "data.dataset.imagefolder",
        "32-bit float pixels",
    ),
    Case(
        "int32_tiff_beyond_16_bits",
        "images",
        bad_image("i.tif", tiff(np.full((8, 8), 70_000, dtype=np.int32))),
        "data.dataset.imagefolder",
        "beyond 16 bits",
    ),
    Case(
        "tiff_that_pillow_logs_about",
        "images",
        bad_image("odd.tif", tiff_with_samples_per_pixel(65_000)),
        "data.dataset.imagefolder",
        "odd.tif: corrupt or unreadable image",
        sweep=True,
    ),
    Case(
        "text_file",
        "images",
        bad_image("notes.txt", b"hello"),
        "data.dataset.imagefolder",
        "notes.txt: not an image file",
    ),
    Case(
        "text_with_image_suffix",
        "images",
        bad_image("fake.png", b"hello, not a png"),
        "data.dataset.imagefolder",
        "fake.png: corrupt or unreadable image",
    ),
    Case(
        "empty_image_file",
        "images",
        bad_image("empty.jpg", b""),
        "data.dataset.imagefolder",
        "empty.jpg: corrupt or unreadable image",
    ),
    Case(
        "symlink_out_of_the_folder",
        "images",
        with_folder(_link_outside),
        "data.dataset.imagefolder",
        "linked.png: a link that leads out of the image folder",
        sweep=True,
    ),
    Case(
        "class_folder_out_of_the_folder",
        "images",
        with_folder(_class_folder_outside),
        "data.dataset.imagefolder",
        "wolf: a link that leads out of the image folder",
    ),
    Case(
        "symlink_to_etc_passwd",
        "images",
        with_folder(lambda r: _link("/etc/passwd", r / "dog" / "p.png")),
        "data.dataset.imagefolder",
        "leads out of the image folder",
    ),
    Case(
        "symlink_loop",
        "images",
        with_folder(
            lambda r: (_link(r / "cat" / "b.png", r / "cat" / "a.png"), _link(r / "cat" / "a.png", r / "cat" / "b.png"))
        ),
        "data.dataset.imagefolder",
        "a symlink loop",
    ),
    Case(
        "dangling_symlink",
        "images",
        with_folder(lambda r: _link(r / "gone.png", r / "cat" / "x.png")),
        "data.dataset.imagefolder",
        "x.png: a broken link",
    ),
    Case(
        "fifo_in_folder",
        "images",
        with_folder(lambda r: fifo(r / "cat" / "pipe.png")),
        "data.dataset.imagefolder",
        "pipe.png: not a regular file",
        sweep=True,
    ),
    Case("folder_reached_twice", "images", with_folder(_reached_twice), "data.dataset.imagefolder", "reached twice"),
    Case(
        "folder_is_a_file",
        "images",
        lambda tmp: (tmp / "f").write_text("x") and folder_spec(tmp / "f"),
        "data.dataset.imagefolder",
        "not a directory",
    ),
    Case(
        "folder_missing",
        "images",
        lambda tmp: folder_spec(tmp / "nope"),
        "data.dataset.imagefolder",
        "no such directory",
    ),
    Case(
        "one_class_only",
        "images",
        lambda tmp: folder_spec(image_folder(tmp, classes=("cat",))),
        "data.dataset.imagefolder",
        "at least two class folders",
    ),
    Case(
        "train_without_val",
        "images",
        lambda tmp: folder_spec(image_folder(tmp / "s", name="train").parent),
        "data.dataset.imagefolder",
        "no val/ folder",
    ),
    # -- weights files ----------------------------------------------------------------------------
    Case(
        "weights_missing",
        "weights",
        lambda tmp: weights_spec(tmp / "nope.safetensors"),
        "weights.source",
        "does not exist",
        sweep=True,
    ),
    Case(
        "weights_directory", "weights", weights_file("w.pth", lambda p: p.mkdir()), "weights.source", "is a directory"
    ),
    Case(
        "weights_fifo",
        "weights",
        weights_file("w.safetensors", fifo),
        "weights.source",
        "not a regular file",
        sweep=True,
    ),
    Case(
        "weights_device",
        "weights",
        weights_file("w.pth", lambda p: p.symlink_to("/dev/zero")),
        "weights.source",
        "not a regular file",
    ),
    Case("weights_empty", "weights", weights_file("w.pt", b""), "weights.source", "the file is empty"),
    Case("weights_unsupported_suffix", "weights", weights_file("w.txt", b"x"), "weights.source", "unsupported suffix"),
    Case(
        "weights_suffix_only_looks_right",
        "weights",
        weights_file("w.pth.zip", b"x"),
        "weights.source",
        "unsupported suffix",
    ),
    Case(
        "safetensors_header_lies",
        "weights",
        weights_file("w.safetensors", safetensors_bytes({}, claimed=10**12)),
        "weights.source",
        "header claims 1,000,000,000,000 bytes",
        sweep=True,
    ),
    Case(
        "safetensors_header_not_json",
        "weights",
        weights_file("w.safetensors", safetensors_bytes(b"{not json")),
        "weights.source",
        "not JSON",
    ),
    Case(
        "safetensors_tensor_outside",
        "weights",
        weights_file(
            "w.safetensors",
            safetensors_bytes({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 1 << 40]}}, b"\0" * 16),
        ),
        "weights.source",
        "lies outside the file",
    ),
    Case(
        "safetensors_too_short",
        "weights",
        weights_file("w.safetensors", b"\x01\x02"),
        "weights.source",
        "shorter than a safetensors header",
    ),
    Case(
        "torch_file_junk",
        "weights",
        weights_file("w.pth", os.urandom(64).replace(b"\x80", b"\x81").replace(b"P", b"Q")),
        "weights.source",
        "neither a zip archive nor a pickle",
    ),
    Case(
        "pickle_that_runs_code",
        "weights",
        weights_file("evil.pth", pickled_payload),
        "weights.source",
        "not a valid checkpoint",
        commands=("sweep",),
    ),
    Case(
        "torch_zip_truncated",
        "weights",
        weights_file("cut.pth.tar", lambda p: (pickled_payload(p), p.write_bytes(p.read_bytes()[:200]))),
        "weights.source",
        "not a valid checkpoint",
        commands=("sweep",),
    ),
]

# -- budgets and objectives: `constraints`, `objective` as a list, `early_stopping.phase_aware` -----------
# BASE's backbones at their own input size (160 px), 5 classes: test_resnet 373,173 parameters and
# 102,451,680 MACs per image, test_vit 306,565 and 37,571,648.
CASES += [
    Case(
        "budget_unknown_cost",
        "budgets",
        add("constraints: {latency: {max: 2.0}}\n"),
        "constraints.latency",
        "did you mean 'latency_ms'",
    ),
    Case(
        "budget_flops_for_macs",
        "budgets",
        add("constraints: {flops: {max: 1.0e9}}\n"),
        "constraints.flops",
        "unknown key",
    ),
    Case("budget_nan", "budgets", add("constraints: {params: {max: .nan}}\n"), "constraints.params.max", "finite"),
    Case("budget_inf", "budgets", add("constraints: {macs: {max: .inf}}\n"), "constraints.macs.max", "finite"),
    Case(
        "budget_zero", "budgets", add("constraints: {params: {max: 0}}\n"), "constraints.params.max", "greater than 0"
    ),
    Case(
        "budget_negative",
        "budgets",
        add("constraints: {latency_ms: {max: -1}}\n"),
        "constraints.latency_ms.max",
        "greater than 0",
    ),
    Case(
        "budget_string",
        "budgets",
        add("constraints: {params: {max: '5e6'}}\n"),
        "constraints.params.max",
        "valid number",
    ),
    Case(
        "budget_bool", "budgets", add("constraints: {params: {max: true}}\n"), "constraints.params.max", "valid number"
    ),
    Case(
        "budget_huge",
        "budgets",
        add("constraints: {macs: {max: 1.0e300}}\n"),
        "constraints.macs.max",
        "less than or equal",
    ),
    Case(
        "budget_scalar", "budgets", add("constraints: {params: 5000000}\n"), "constraints.params", "must be a mapping"
    ),
    Case("budget_without_max", "budgets", add("constraints: {params: {}}\n"), "constraints.params.max", "required"),
    Case(
        "budget_with_min",
        "budgets",
        add("constraints: {params: {max: 1.0e6, min: 1}}\n"),
        "constraints.params.min",
        "unknown key",
    ),
    Case("budget_list", "budgets", add("constraints: [params]\n"), "constraints", "must be a mapping"),
    Case("budget_empty", "budgets", add("constraints: {}\n"), "constraints", "sets no budget", sweep=True),
    Case(
        "budget_no_config_meets",
        "budgets",
        add("constraints: {params: {max: 1000}}\n"),
        "constraints.params.max",
        "the cheapest backbone in the space, test_vit, has 306,565 parameters",
        sweep=True,
    ),
    Case(
        "budget_no_config_meets_macs",
        "budgets",
        add("constraints: {macs: {max: 1.0e6}}\n"),
        "constraints.macs.max",
        "test_vit, has 37,571,648 MACs per image",
    ),
    Case(
        "budgets_never_met_together",
        "budgets",
        # test_resnet: fewer parameters than mobilenetv3_small_050 (373,173 to 573,349), far more MACs
        add("constraints: {params: {max: 4.0e5}, macs: {max: 5.0e7}}\n").replace(
            "[test_resnet, test_vit]", "[test_resnet, mobilenetv3_small_050]"
        ),
        "constraints",
        "no backbone meets every budget at once (within params only test_resnet; macs only mobilenetv3_small_050)",
    ),
    Case("objectives_empty", "objectives", add("objective: []\n"), "objective", "at least 1 item"),
    Case(
        "objectives_too_many",
        "objectives",
        add(
            "objective: [{metric: val_acc}, {metric: val_f1}, {metric: val_loss, mode: min}, "
            "{metric: params, mode: min}, {metric: macs, mode: min}]\n"
        ),
        "objective",
        "at most 4 items",
    ),
    Case("objective_bare_name", "objectives", add("objective: val_acc\n"), "objective", "or a list of them"),
    Case(
        "objectives_bare_names",
        "objectives",
        add("objective: [val_acc, latency_ms]\n"),
        "objective[0]",
        "must be a mapping",
    ),
    Case(
        "objectives_twice",
        "objectives",
        add("objective: [{metric: val_acc}, {metric: val_acc, mode: min}]\n"),
        "objective[1].metric",
        "already an objective",
    ),
    Case(
        "objectives_cost_typo",
        "objectives",
        add("objective: [{metric: val_acc}, {metric: latncy_ms, mode: min}]\n"),
        "objective[1].metric",
        "did you mean 'latency_ms'",
    ),
    Case(
        "objectives_cost_maximised",
        "objectives",
        add("objective: [{metric: val_acc}, {metric: params, mode: max}]\n"),
        "objective[1].mode",
        "mode must be 'min'",
    ),
    Case(
        "objectives_costs_only",
        "objectives",
        add("objective: [{metric: params, mode: min}, {metric: macs, mode: min}]\n"),
        "objective",
        "costs alone need no training",
        sweep=True,
    ),
    Case(
        "objective_single_cost",
        "objectives",
        add("objective: {metric: latency_ms, mode: min}\n"),
        "objective.metric",
        "is a cost",
    ),
    Case(
        "objectives_mode_int",
        "objectives",
        add("objective: [{metric: val_acc, mode: 1}]\n"),
        "objective[0].mode",
        "'max' or 'min'",
    ),
    Case(
        "phase_aware_string",
        "objectives",
        replace(
            "early_stopping: {max_epochs: 3, grace_period: 1}", "early_stopping: {max_epochs: 3, phase_aware: 'on'}"
        ),
        "early_stopping.phase_aware",
        "valid boolean",
    ),
]
