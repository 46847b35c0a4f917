"""The trial config contract: every key a trial understands, its default and its valid range.

The orchestrator checks a spec's `space` against this table, so a typo or an out-of-range
value is caught before any compute is spent, and nothing configured is silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_EPOCHS = 10_000  # as the spec's max_epochs: no epoch count beyond what any run could reach
MAX_SEED = 2**32 - 1  # numpy and Optuna take 32-bit seeds
MAX_LAYER_GROUPS = 10_000  # a count of transferred body groups (timm models have tens)


UNFREEZE_MODES = ("frozen", "full", "gradual", "lp_ft")
AUGMENT_LEVELS = ("none", "light", "strong")


@dataclass(frozen=True)
class Hyperparameter:
    default: Any
    kind: type  # float, int, str or bool; an int is accepted where a float is expected, a bool nowhere else
    low: float | None = None  # inclusive
    high: float | None = None  # inclusive unless high_open
    high_open: bool = False
    choices: tuple[str, ...] | None = None
    help: str = ""

    def check(self, value: Any) -> str | None:
        """None if `value` is valid, else what is wrong with it."""
        if self.choices is not None:
            return None if value in self.choices else f"must be one of {list(self.choices)}, got {value!r}"
        if self.kind is bool:
            return None if isinstance(value, bool) else f"must be true or false, got {value!r}"
        numeric = (int, float) if self.kind is float else (self.kind,)
        if isinstance(value, bool) or not isinstance(value, numeric):
            return f"must be {self.kind.__name__}, got {value!r}"
        if self.low is not None and value < self.low:
            return f"must be >= {self.low}, got {value!r}"
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return f"must be {'<' if self.high_open else '<='} {self.high}, got {value!r}"
        return None


HYPERPARAMETERS: dict[str, Hyperparameter] = {
    "backbone": Hyperparameter("resnet10t", str, help="timm model name"),
    "transfer_layers": Hyperparameter(
        1.0, float, low=0, high=MAX_LAYER_GROUPS, help="fraction in [0, 1] of body groups, or an int count"
    ),
    "unfreeze": Hyperparameter("frozen", str, choices=UNFREEZE_MODES, help="schedule of the transferred groups"),
    "unfreeze_every": Hyperparameter(1, int, low=1, high=MAX_EPOCHS, help="gradual: epochs between unfreezing groups"),
    "lp_epochs": Hyperparameter(1, int, low=1, high=MAX_EPOCHS, help="lp_ft: epochs of linear probing first"),
    "lr": Hyperparameter(3e-3, float, low=1e-8, high=10.0, help="peak learning rate of the head (AdamW)"),
    "layer_decay": Hyperparameter(1.0, float, low=0.01, high=1.0, help="lr scale per layer group below the head"),
    "weight_decay": Hyperparameter(1e-4, float, low=0.0, high=1.0, help="AdamW decoupled weight decay"),
    "warmup_epochs": Hyperparameter(0, int, low=0, high=MAX_EPOCHS, help="linear warmup before cosine decay"),
    "dropout": Hyperparameter(0.0, float, low=0.0, high=1.0, high_open=True, help="dropout before the head"),
    "label_smoothing": Hyperparameter(
        0.0, float, low=0.0, high=1.0, high_open=True, help="cross-entropy label smoothing"
    ),
    "batch_size": Hyperparameter(
        32, int, low=1, high=65536, help="training batch size; on a GPU the most tried, the largest that fits is used"
    ),
    "seed": Hyperparameter(
        0, int, low=0, high=MAX_SEED, help="trial seed (init, data order); search it to repeat configs"
    ),
    "drop_path": Hyperparameter(0.0, float, low=0.0, high=1.0, high_open=True, help="stochastic depth rate"),
    "mixup": Hyperparameter(0.0, float, low=0.0, high=10.0, help="mixup alpha (0: off)"),
    "cutmix": Hyperparameter(0.0, float, low=0.0, high=10.0, help="cutmix alpha (0: off)"),
    "augment": Hyperparameter("none", str, choices=AUGMENT_LEVELS, help="none | light (crops) | strong (RandAugment)"),
    "hflip": Hyperparameter(0.0, float, low=0.0, high=1.0, help="horizontal flip probability when augmenting"),
    "l2sp": Hyperparameter(0.0, float, low=0.0, high=100.0, help="L2-SP strength toward the pretrained weights"),
    "feature_cache": Hyperparameter(
        True, bool, help="compute a frozen prefix once, reuse it across epochs and trials (deterministic inputs only)"
    ),
    "precision": Hyperparameter(
        "bf16", str, choices=("bf16", "fp32"), help="autocast dtype on CUDA; ignored on CPU, which computes in fp32"
    ),
    "channels_last": Hyperparameter(True, bool, help="channels_last memory format on CUDA; ignored on CPU"),
}

# Besides these, the orchestrator sets `max_epochs`, `weights`, `seed` (unless searched), the
# spec's budgets (`max_params`, `max_macs`, `max_latency_ms`: see trainables.budgets) and, for the
# spec's baselines, `baseline` in every trial config.


def with_defaults(config: dict[str, Any]) -> dict[str, Any]:
    return {**{name: hp.default for name, hp in HYPERPARAMETERS.items()}, **config}
