"""Fitting the batch size to the GPU, exercised on the CPU with an injected out-of-memory condition
(the error is the type CUDA raises)."""

import math

import pytest
import ray
import torch
from torch import nn

from trainables.batch_size import fit_batch_size, largest_batch, training_step_fits
from trainables.feature_cache import release_shared_features
from trainables.gpu_memory import GpuOutOfMemory
from trainables.hyperparams import with_defaults
from trainables.models import create_backbone

CPU = torch.device("cpu")


class Probes:
    """A memory that holds batches up to `limit`: counts the probes, as the real probe answers them."""

    def __init__(self, limit: int):
        self.limit, self.tried = limit, []

    def __call__(self, batch: int) -> bool:
        self.tried.append(batch)
        return batch <= self.limit


@pytest.mark.parametrize("limit", [1, 2, 37, 63, 64, 1000])
def test_the_largest_batch_that_fits_is_found_in_a_logarithmic_number_of_probes(limit):
    probes = Probes(limit)
    assert largest_batch(probes, 64) == min(limit, 64)
    assert len(probes.tried) <= 1 + math.ceil(math.log2(64))
    assert probes.tried[0] == 64  # the spec's batch_size first: it is the answer whenever it fits


def test_nothing_fitting_is_an_out_of_memory_error_that_says_so():
    with pytest.raises(GpuOutOfMemory, match="not even a batch of 1"):
        largest_batch(Probes(0), 16)


class RunsOutAbove(nn.Module):
    """A model that raises CUDA's out-of-memory error on batches larger than `limit`."""

    def __init__(self, model: nn.Module, limit: int):
        super().__init__()
        self.model, self.limit = model, limit

    def forward(self, images):
        if len(images) > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.model(images)


def test_the_real_probe_takes_a_training_step_and_reads_out_of_memory_as_does_not_fit():
    model = RunsOutAbove(create_backbone("test_resnet", 3), limit=5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = with_defaults({"backbone": "test_resnet", "batch_size": 12, "precision": "fp32", "channels_last": False})
    assert largest_batch(training_step_fits(model, (3, 32, 32), cfg, CPU), 12) == 5
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # it stepped a copy


def test_on_the_cpu_the_batch_size_is_the_specs():
    cfg = with_defaults({"backbone": "test_resnet", "batch_size": 48})
    assert fit_batch_size(create_backbone("test_resnet", 3), (3, 32, 32), cfg, CPU, gpu_share=0.0) == 48


@pytest.fixture
def ray_session():
    ray.shutdown()
    ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR")
    yield
    release_shared_features()
    ray.shutdown()


def test_the_search_runs_once_per_backbone_and_size_for_the_whole_sweep(ray_session):
    model = create_backbone("test_resnet", 3)
    cfg = with_defaults({"backbone": "test_resnet", "batch_size": 64})
    first, second, other_size = Probes(20), Probes(20), Probes(20)
    assert fit_batch_size(model, (3, 32, 32), cfg, CPU, 0.25, fits=first) == 20
    assert fit_batch_size(model, (3, 32, 32), cfg, CPU, 0.25, fits=second) == 20 and second.tried == []
    assert fit_batch_size(model, (3, 64, 64), cfg, CPU, 0.25, fits=other_size) == 20 and other_size.tried
