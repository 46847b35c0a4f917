"""An image folder is decoded once for a sweep when its pixels fit the memory allowed, and not otherwise."""

import textwrap

import numpy as np
import pytest
import ray
from PIL import Image

from orchestrator.run.inputs import decoded_target, target_task
from orchestrator.spec import load_spec

SPEC = textwrap.dedent("""\
    experiment: folder
    data: {{dataset: {{imagefolder: {root}}}, train_per_class: null, image_size: {size}}}
    weights: {{source: none}}
    space:
      backbone: {{type: categorical, choices: [test_resnet, test_vit]}}
""")


@pytest.fixture(scope="module")
def ray_with_a_small_object_store():
    ray.shutdown()
    ray.init(num_cpus=1, object_store_memory=80 * 2**20, include_dashboard=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (tmp_path / "images" / name).mkdir(parents=True)
        for i in range(10):
            pixels = rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "images" / name / f"{i}.jpg")
    return tmp_path / "images"


@pytest.fixture(autouse=True)
def _default_share(monkeypatch):
    monkeypatch.delenv("ORCHESTRATOR_DECODED_SHARE", raising=False)  # these tests are of the default


def _target(write_spec, folder, size):
    path = write_spec(SPEC.format(root=folder, size=size))
    spec = load_spec(path)
    return spec, target_task(spec, str(path)), str(path)


def test_a_folder_that_fits_is_decoded_once_at_the_sweeps_input_size(
    ray_with_a_small_object_store, folder, write_spec, capsys
):
    spec, target, source = _target(write_spec, folder, 32)
    decoded = decoded_target(spec, target, source)
    for split, original in ((decoded.train, target.train), (decoded.val, target.val)):
        assert split.paths == original.paths and split.decoded is not None
        assert len(split.decoded) == len(original) and split.decoded.shorter == 32
    assert target.train.decoded is None  # the driver keeps its own copy undecoded
    assert "decoding 20 images once, at 32 px" in capsys.readouterr().out


def test_a_folder_too_big_for_the_allowed_share_of_the_object_store_is_read_every_epoch(
    ray_with_a_small_object_store, folder, write_spec, capsys
):
    spec, target, source = _target(write_spec, folder, 1024)  # 20 x 1024 x 1365 x 3 bytes: 84 MB
    assert decoded_target(spec, target, source) is target
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert "20 images would take 80 MiB decoded at 1024 px, more than the 40 MiB allowed (50% of" in line
    assert "trials decode them every epoch instead" in line
