"""Source weights from local files and from the Hugging Face cache, offline, on tiny timm models."""

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import timm
import torch
from huggingface_hub import constants as hf_constants
from safetensors.torch import load_file, save_file

from trainables.weights import WeightsError, load_source_state

REPO = Path(__file__).resolve().parents[2]


def _source_state(name="test_resnet", seed=0, **kwargs):
    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False, **kwargs)
    return {k: v.clone().contiguous() for k, v in model.state_dict().items()}


def _assert_same(loaded, saved, skip_prefix="fc."):
    body = [k for k in saved if not k.startswith(skip_prefix)]
    assert body and all(torch.equal(loaded[k], saved[k]) for k in body)


def _make_marker(path):
    Path(path).write_text("unpickled")


class _Payload:
    """Unpickling this runs `_make_marker`: the side effect weights-only loading must prevent."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return _make_marker, (self.marker,)


def test_safetensors_round_trip(tmp_path):
    saved = _source_state()
    save_file(saved, tmp_path / "w.safetensors")
    loaded = load_source_state("test_resnet", f"file:{tmp_path / 'w.safetensors'}")
    _assert_same(loaded, saved, skip_prefix="<none>")  # default head: every key, head included


def test_pth_round_trip_plain_and_wrapped(tmp_path):
    saved = _source_state(seed=1)
    torch.save(saved, tmp_path / "plain.pth")
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in saved.items()}}, tmp_path / "wrapped.pt")
    _assert_same(load_source_state("test_resnet", f"file:{tmp_path / 'plain.pth'}"), saved)
    _assert_same(load_source_state("test_resnet", f"file:{tmp_path / 'wrapped.pt'}"), saved)


def test_file_keeps_a_fine_tuned_head(tmp_path):
    saved = _source_state(seed=2, num_classes=4)
    torch.save(saved, tmp_path / "ft.bin")
    loaded = load_source_state("test_resnet", f"file:{tmp_path / 'ft.bin'}")
    _assert_same(loaded, saved, skip_prefix="<none>")
    assert loaded["fc.weight"].shape[0] == 4


def test_pickled_objects_are_refused_without_running_them(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": _source_state(), "extra": _Payload(str(marker))}, path)
    with pytest.raises(WeightsError, match=f"{path}.*not a valid checkpoint.*_make_marker"):
        load_source_state("test_resnet", f"file:{path}")
    assert not marker.exists()
    torch.load(path, weights_only=False)  # control: an unsafe load would have run the payload
    assert marker.exists()


def test_missing_and_corrupt_files_name_the_path(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(WeightsError, match=f"{missing}.*does not exist"):
        load_source_state("test_resnet", f"file:{missing}")
    for name in ("junk.pth", "junk.safetensors", "empty.pt"):
        path = tmp_path / name
        path.write_bytes(os.urandom(4096) if name.startswith("junk") else b"")
        with pytest.raises(WeightsError, match=f"{path} is not a valid checkpoint") as info:
            load_source_state("test_resnet", f"file:{path}")
        assert "\n" not in str(info.value)
    (tmp_path / "w.txt").write_text("x")
    with pytest.raises(WeightsError, match="w.txt has an unsupported suffix"):
        load_source_state("test_resnet", f"file:{tmp_path / 'w.txt'}")


def test_wrong_architecture(tmp_path):
    save_file(_source_state("test_vit"), tmp_path / "vit.safetensors")
    with pytest.raises(WeightsError, match="do not match the test_resnet architecture"):
        load_source_state("test_resnet", f"file:{tmp_path / 'vit.safetensors'}")


@pytest.mark.parametrize("source", ["", "file:", "hf-hub", "http://x/w.pth", "FILE:/w.pth"])
def test_unknown_source_lists_valid_forms(source):
    expected = r"test_resnet: unknown weights source .*; expected one of \['pretrain', 'hub'"
    with pytest.raises(WeightsError, match=expected):
        load_source_state("test_resnet", source)


def test_hub_offline_and_not_cached_fails_fast(tmp_path, monkeypatch):
    cache = tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    # huggingface_hub reads these once at import; patch the live values too.
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    start = time.monotonic()
    with pytest.raises(WeightsError, match="test_resnet.*not in the local Hugging Face cache.*file:<path>"):
        load_source_state("test_resnet", "hub")
    assert time.monotonic() - start < 30


def test_hub_call_uses_short_timeouts_unless_the_user_set_them(monkeypatch):
    seen = {}

    def fake_create_model(name, pretrained):
        seen.update(etag=hf_constants.HF_HUB_ETAG_TIMEOUT, download=hf_constants.HF_HUB_DOWNLOAD_TIMEOUT)
        return torch.nn.Linear(1, 1)

    monkeypatch.setattr(timm, "create_model", fake_create_model)
    monkeypatch.delenv("HF_HUB_ETAG_TIMEOUT", raising=False)
    monkeypatch.setenv("HF_HUB_DOWNLOAD_TIMEOUT", "99")
    monkeypatch.setattr(hf_constants, "HF_HUB_ETAG_TIMEOUT", 600)
    monkeypatch.setattr(hf_constants, "HF_HUB_DOWNLOAD_TIMEOUT", 99)
    load_source_state("test_resnet", "hub")
    assert seen == {"etag": 10, "download": 99}
    assert hf_constants.HF_HUB_ETAG_TIMEOUT == 600  # restored after the call


def test_hub_offline_reads_the_local_cache(tmp_path):
    """The real hub path, configured only by environment variables as a user would, in a fresh process."""
    hub_id = timm.models.get_pretrained_cfg("test_resnet").hf_hub_id  # timm/test_resnet.r160_in1k
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf" / "hub" / f"models--{hub_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    saved = _source_state(seed=3)
    save_file(saved, snapshot / "model.safetensors")
    (snapshot / "config.json").write_text(json.dumps({"architecture": "test_resnet", "num_classes": 1000}))

    out = tmp_path / "loaded.safetensors"
    code = (
        "import sys; from safetensors.torch import save_file; from trainables.weights import load_source_state; "
        "save_file(load_source_state('test_resnet', 'hub'), sys.argv[1])"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), PYTHONPATH=str(REPO))
    subprocess.run([sys.executable, "-c", code, str(out)], cwd=REPO, env=env, check=True, timeout=120)
    _assert_same(load_file(out), saved, skip_prefix="<none>")


def test_pth_tar_is_a_torch_checkpoint(tmp_path):
    saved = _source_state(seed=4)
    torch.save({"epoch": 9, "state_dict": saved}, tmp_path / "model_best.PTH.TAR")
    _assert_same(load_source_state("test_resnet", f"file:{tmp_path / 'model_best.PTH.TAR'}"), saved)


def _safetensors(header, data=b"", claimed=None):
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if claimed is None else claimed) + raw + data


@pytest.mark.parametrize(
    "name,make,words",
    [
        ("dir.pth", lambda p: p.mkdir(), "is a directory"),
        ("pipe.safetensors", lambda p: os.mkfifo(p), "not a regular file"),
        ("dev.pth", lambda p: p.symlink_to("/dev/zero"), "not a regular file"),
        ("empty.safetensors", lambda p: p.write_bytes(b""), "the file is empty"),
        ("lies.safetensors", lambda p: p.write_bytes(_safetensors({}, claimed=2**63)), "header claims"),
        ("short.safetensors", lambda p: p.write_bytes(b"\x10\x00"), "shorter than a safetensors header"),
        ("json.safetensors", lambda p: p.write_bytes(_safetensors(b"\xff\xfe{")), "header is not JSON"),
        ("list.safetensors", lambda p: p.write_bytes(_safetensors(b"[1]")), "not a JSON object"),
        (
            "outside.safetensors",
            lambda p: p.write_bytes(_safetensors({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 64]}})),
            "lies outside the file",
        ),
        (
            "negative.safetensors",
            lambda p: p.write_bytes(_safetensors({"w": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}})),
            "lies outside the file",
        ),
        ("text.pt", lambda p: p.write_text("not a checkpoint"), "neither a zip archive nor a pickle"),
    ],
)
def test_files_that_are_no_checkpoint_are_refused_before_reading_them(tmp_path, name, make, words):
    path = tmp_path / name
    make(path)
    start = time.monotonic()
    with pytest.raises(WeightsError, match=f"test_resnet: .*{name}.*{words}") as info:
        load_source_state("test_resnet", f"file:{path}")
    assert time.monotonic() - start < 10 and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "raw,words",
    [("/tmp/" + "w" * 300 + ".pth", "a name of 304 bytes"), ("~no_such_user_4b1d/w.pth", "home directory")],
)
def test_weights_paths_the_os_cannot_take_are_refused(raw, words):
    with pytest.raises(WeightsError, match=words):
        load_source_state("test_resnet", f"file:{raw}")


def test_the_spec_check_and_the_loader_accept_the_same_suffixes():
    from trainables.weight_files import WEIGHTS_SUFFIXES, has_weights_suffix

    assert {".safetensors", ".pth", ".pth.tar", ".pt", ".bin"} == set(WEIGHTS_SUFFIXES)
    assert has_weights_suffix("best.PTH.TAR") and not has_weights_suffix("best.tar") and not has_weights_suffix("w.pkl")
