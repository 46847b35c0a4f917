"""Splitting a model at a layer-group boundary into a frozen prefix and the suffix after it, verified on real images."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from trainables.models import LayerGroups


class Suffix(nn.Module):
    """The model after the cut. `model` is registered, so train() and eval() reach all of it."""

    def __init__(self, model: nn.Module, steps: list[nn.Module], head: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.model = model
        self._steps = steps  # submodules of `model` that forward_features runs after the cut, in order
        self._head = head

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        for step in self._steps:
            features = step(features)
        return self._head(features)


class _Reached(Exception):
    """Stops forward_features at the cut, carrying the input of the first module after it."""

    def __init__(self, value: torch.Tensor):
        super().__init__()
        self.value = value


class Split:
    """model(x) == suffix(prefix(x)). The prefix is the model's own forward_features, stopped where
    the suffix starts (`cut` indexes `chain`); `cut=None` cuts just before the classifier."""

    def __init__(self, model: nn.Module, chain: list[tuple[str, nn.Module]], cut: int | None):
        self.model, self.chain, self.cut = model, chain, cut
        if cut is None:  # the prefix ends at the pre-logits; the classifier's dropout stays after it
            classifier, dropout = model.get_classifier(), head_dropout(model)
            self.suffix = Suffix(model, [], lambda f: classifier(dropout(f)))
        else:
            self.suffix = Suffix(model, [module for _, module in chain[cut:]], model.forward_head)

    def prefix(self, x: torch.Tensor) -> torch.Tensor:
        """The features of `x`; in eval mode (in training mode the pre-logits would include dropout)."""
        if self.cut is None:
            return self.model.forward_head(self.model.forward_features(x), pre_logits=True)
        if self.cut == len(self.chain):
            return self.model.forward_features(x)

        def stop(module: nn.Module, args: tuple) -> None:
            if len(args) != 1:
                raise ValueError(f"{self.chain[self.cut][0]} takes {len(args)} inputs, not one tensor")
            raise _Reached(args[0])

        handle = self.chain[self.cut][1].register_forward_pre_hook(stop)
        try:
            self.model.forward_features(x)
        except _Reached as reached:
            return reached.value
        finally:
            handle.remove()
        raise ValueError(f"forward_features never reached {self.chain[self.cut][0]}")


def split_model(model: nn.Module, groups: LayerGroups, num_frozen: int, sample: torch.Tensor) -> Split | None:
    """The deepest split whose prefix holds only the first `num_frozen` body groups, verified on
    `sample` (a few real images); None if there is none. Call with the model in its training mode."""
    if num_frozen == 0:
        return None
    if num_frozen >= len(groups.body):
        split = Split(model, [], cut=None)
    else:
        frozen = {key for group in groups.body[:num_frozen] for key in group}
        keys = list(model.state_dict())
        with eval_mode(model):
            chain = feature_chain(model, sample)
        cut = 0
        while cut < len(chain) and all(k in frozen for k in keys if k.startswith(chain[cut][0] + ".")):
            cut += 1
        if cut == 0:
            return None
        split = Split(model, chain, cut)
    return split if verify(model, split, sample) else None


def feature_chain(model: nn.Module, sample: torch.Tensor) -> list[tuple[str, nn.Module]]:
    """The model's children in the order forward_features calls them, with sequential containers
    (`layers`, `blocks`, `stages`...) opened up to their blocks, so a cut can fall between any two."""
    called: list[str] = []
    handles = [
        child.register_forward_pre_hook(lambda *_, name=name: called.append(name))
        for name, child in model.named_children()
    ]
    try:
        with torch.no_grad():
            model.forward_features(sample)
    finally:
        for handle in handles:
            handle.remove()
    return [step for name in dict.fromkeys(called) for step in _opened(name, model.get_submodule(name))]


def _opened(name: str, module: nn.Module) -> list[tuple[str, nn.Module]]:
    if type(module).forward is nn.Sequential.forward:
        return [step for child, sub in module.named_children() for step in _opened(f"{name}.{child}", sub)]
    children = dict(module.named_children())
    if list(children) == ["downsample", "blocks"]:  # timm's stages (ConvNeXt...): downsample, then blocks
        return _opened(f"{name}.downsample", children["downsample"]) + _opened(f"{name}.blocks", children["blocks"])
    return [(name, module)]


def head_dropout(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The dropout timm applies to the pre-logits before the classifier (its `drop_rate`)."""
    for path in ("head_drop", "head.drop"):
        with contextlib.suppress(AttributeError):
            module = model.get_submodule(path)
            if isinstance(module, nn.Dropout):
                return module
    rate = float(getattr(model, "drop_rate", 0.0) or 0.0)
    return lambda f: F.dropout(f, p=rate, training=model.training) if rate else f


def verify(model: nn.Module, split: Split, sample: torch.Tensor) -> bool:
    """suffix(prefix(x)) == model(x) in eval mode, and in training mode with the same random draws
    (so the prefix is deterministic and the dropout after it lines up), and no trainable
    parameter feeds the prefix. Buffers and the random stream are left as they were."""
    device = sample.device
    with eval_mode(model):
        with torch.enable_grad():
            features = split.prefix(sample)
        if features.requires_grad:
            return False
        with torch.no_grad():
            if not close_enough(split.suffix(features), model(sample)):
                return False
    with torch.no_grad(), kept_buffers(model), own_rng(device):
        torch.manual_seed(0)
        expected = model(sample)
        torch.manual_seed(0)
        return close_enough(split.suffix(features), expected)


def close_enough(got: torch.Tensor, expected: torch.Tensor) -> bool:
    """Equal up to float rounding; a wrong split is off by the size of the logits themselves."""
    if got.shape != expected.shape:
        return False
    scale = max(1.0, float(expected.abs().max()))
    return float((got.float() - expected.float()).abs().max()) <= 1e-3 * scale


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


@contextlib.contextmanager
def kept_buffers(model: nn.Module) -> Iterator[None]:
    saved = {name: buffer.clone() for name, buffer in model.named_buffers()}
    try:
        yield
    finally:
        for name, buffer in model.named_buffers():
            buffer.copy_(saved[name])


def own_rng(device: torch.device):
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    return torch.random.fork_rng(devices=cuda)
