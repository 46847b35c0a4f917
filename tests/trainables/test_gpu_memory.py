"""A GPU out-of-memory error fails the trial with a message that says so (exercised without a GPU:
the error type is the one CUDA raises)."""

import pytest
import torch

from trainables.gpu_memory import GpuOutOfMemory, explain_out_of_memory


def test_out_of_memory_names_the_backbone_batch_size_and_the_remedies():
    with pytest.raises(GpuOutOfMemory) as caught:
        with explain_out_of_memory("resnet50", 512, torch.device("cpu")):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")
    message = str(caught.value)
    assert message.startswith("GPU out of memory: resnet50 at batch_size 512 does not fit")
    assert "Lower batch_size" in message and "resources.gpu" in message
    assert "Tried to allocate 2.00 GiB" in message and "more detail" not in message


def test_other_errors_pass_through_unchanged():
    with pytest.raises(ValueError, match="not memory"):
        with explain_out_of_memory("resnet50", 8, torch.device("cpu")):
            raise ValueError("not memory")
