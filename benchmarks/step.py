"""Section 4: images/s of our training step against a minimal hand-written timm loop.

Ours is what a trial runs: `create_backbone`, `layer_groups` + `Freezer` (nothing frozen, so
both sides train the same weights), timm's AdamW factory, `train_one_epoch`. The plain loop
is the textbook one: `timm.create_model`, `torch.optim.AdamW`, cross-entropy, backward, step.
Both start from the same initial weights and consume the same pre-made batches of digits at
the model's input size (the data pipeline is not part of the step).

On the CPU, where other work on the machine makes timings drift, the two alternate step by
step and each round compares their median step times; each side uses one thread, as a
1-CPU trial does. On CUDA (full mode) they alternate epoch by epoch, since a per-step sync
would hide the plain loop's asynchrony; both run bf16 autocast + channels_last, ours through
the trainable's own switches, and the plain loop in fp32 is timed too, to show what those
switches buy.
"""

from __future__ import annotations

import statistics
import time

import timm
import torch
import torch.nn.functional as F
from timm.optim import create_optimizer_v2

from benchmarks.report import Figure, Section
from trainables.data import load_digits_task
from trainables.loop import train_one_epoch
from trainables.models import create_backbone, layer_groups
from trainables.transfer import Freezer
from trainables.transforms import data_config, eval_transform, loader

NUM_CLASSES = 5
LR, WEIGHT_DECAY = 1e-3, 1e-4


def make_batches(model, image_size: int, batch_size: int, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    task = load_digits_task(range(NUM_CLASSES), train_per_class=170, val_per_class=1, seed=0)
    batches = loader(task.train, eval_transform(data_config(model, image_size)), batch_size=batch_size, shuffle_seed=0)
    out = []
    while len(out) < count:
        out += [(x, y) for x, y in batches if len(y) == batch_size]
    out = out[:count]
    if torch.cuda.is_available():
        out = [(x.pin_memory(), y.pin_memory()) for x, y in out]
    return out


class Ours:
    def __init__(self, name: str, device: torch.device, precision: str, channels_last: bool):
        torch.manual_seed(0)
        self.model = create_backbone(name, NUM_CLASSES)
        self.freezer = Freezer(self.model, layer_groups(self.model))
        self.freezer.freeze_first(0)
        self.optimizer = create_optimizer_v2(self.model, opt="adamw", lr=LR, weight_decay=WEIGHT_DECAY)
        fmt = torch.channels_last if channels_last and device.type == "cuda" else torch.contiguous_format
        self.model.to(device, memory_format=fmt)
        self.device, self.precision, self.channels_last = device, precision, channels_last

    def step(self, batch) -> None:
        self._train([batch])

    def epoch(self, batches) -> None:
        self.freezer.train()
        self._train(batches)

    def _train(self, batches) -> None:
        train_one_epoch(
            self.model,
            batches,
            self.optimizer,
            device=self.device,
            precision=self.precision,
            channels_last=self.channels_last,
        )


class Plain:
    """The minimal loop a user would write by hand."""

    def __init__(self, name: str, device: torch.device, bf16: bool, channels_last: bool):
        torch.manual_seed(0)
        self.model = timm.create_model(name, pretrained=False, num_classes=NUM_CLASSES)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.model.to(device, memory_format=fmt)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
        self.device, self.bf16, self.fmt = device, bf16, fmt

    def step(self, batch) -> torch.Tensor:
        images, labels = batch
        images = images.to(self.device, non_blocking=True, memory_format=self.fmt)
        labels = labels.to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            loss = F.cross_entropy(self.model(images), labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def epoch(self, batches) -> None:
        self.model.train()
        total = sum(self.step(batch) for batch in batches)
        float(total)  # one sync at the end, as a loop that logs the epoch's loss does


def images_per_s(runner, batches) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    runner.epoch(batches)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return sum(len(y) for _, y in batches) / (time.perf_counter() - started)


def compare_steps(ours: Ours, plain: Plain, batches, rounds: int) -> dict[str, list[float]]:
    """Per round, images/s of each side from its median step time, the two alternating step by step."""
    ours.freezer.train()
    plain.model.train()
    for batch in batches[:2]:  # warm-up
        ours.step(batch)
        plain.step(batch)
    rates: dict[str, list[float]] = {"ours": [], "plain": []}
    for r in range(rounds):
        times = {"ours": [], "plain": []}
        for i, batch in enumerate(batches):
            order = (("ours", ours), ("plain", plain)) if (r + i) % 2 == 0 else (("plain", plain), ("ours", ours))
            for name, runner in order:
                started = time.perf_counter()
                runner.step(batch)
                times[name].append(time.perf_counter() - started)
        for name, steps in times.items():
            rates[name].append(len(batches[0][1]) / statistics.median(steps))
    return rates


def compare(runners: dict, batches, repeats: int) -> dict[str, list[float]]:
    """images/s of each runner per epoch, alternating the order; one warm-up epoch each first."""
    for runner in runners.values():
        runner.epoch(batches[:2])
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for r in range(repeats):
        order = list(runners) if r % 2 == 0 else list(reversed(runners))
        for name in order:
            rates[name].append(images_per_s(runners[name], batches))
    return rates


def run(profile) -> Section:
    figures, details = [], {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cpu = torch.device("cpu")
        for name, size, batch in profile.step_models:
            ours, plain = Ours(name, cpu, "fp32", False), Plain(name, cpu, False, False)
            batches = make_batches(plain.model, size, batch, profile.step_batches)
            rates = compare_steps(ours, plain, batches, profile.step_repeats)
            per_repeat = [o / p for o, p in zip(rates["ours"], rates["plain"], strict=True)]
            details[f"cpu/{name}@{size}/b{batch}"] = {**rates, "ratio": per_repeat}
            figures.append(
                Figure(
                    "step",
                    f"{name} {size}px b{batch} CPU: ours / plain images/s",
                    per_repeat,
                    goal=(">=", 0.95),
                    over="rounds",
                    how=(
                        f"`train_one_epoch` vs a hand-written loop, alternating step by step, median of "
                        f"{profile.step_batches} steps a round, 1 thread; "
                        f"ours {statistics.median(rates['ours']):.0f} img/s"
                    ),
                )
            )
    finally:
        torch.set_num_threads(threads)
    if torch.cuda.is_available() and profile.step_cuda_models:
        figures += _cuda(profile, details)
    return Section("Training step", figures, details)


def _cuda(profile, details: dict) -> list[Figure]:
    gpu = torch.device("cuda")
    figures = []
    for name, size, batch in profile.step_cuda_models:
        runners = {
            "ours": Ours(name, gpu, "bf16", True),
            "plain": Plain(name, gpu, True, True),
            "plain_fp32": Plain(name, gpu, False, False),
        }
        batches = make_batches(runners["plain"].model, size, batch, profile.step_batches)
        rates = compare(runners, batches, profile.step_repeats)
        details[f"cuda/{name}@{size}/b{batch}"] = rates
        same = [o / p for o, p in zip(rates["ours"], rates["plain"], strict=True)]
        speedup = [o / p for o, p in zip(rates["ours"], rates["plain_fp32"], strict=True)]
        figures += [
            Figure(
                "step",
                f"{name} {size}px b{batch} CUDA bf16+channels_last: ours / plain images/s",
                same,
                goal=(">=", 0.95),
                how=f"both bf16 autocast + channels_last; ours {statistics.median(rates['ours']):.0f} img/s",
            ),
            Figure(
                "step",
                f"{name} {size}px b{batch} CUDA: ours (bf16+CL) / plain fp32 images/s",
                speedup,
                how=f"what the default fast path buys; plain fp32 {statistics.median(rates['plain_fp32']):.0f} img/s",
            ),
        ]
    return figures
