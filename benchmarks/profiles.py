"""How big each comparison is in each mode."""

from __future__ import annotations

from dataclasses import dataclass

DEMO_BACKBONES = ("test_resnet", "mobilenetv3_small_050", "test_vit", "test_convnext")


@dataclass(frozen=True)
class Profile:
    name: str
    # 1. orchestration overhead: 4 configs of ~30 s, 2 at a time, through the sweep and a plain pool
    overhead_epochs: int = 24  # trials of ~30 s on an idle core of the 2-core machine
    overhead_train_per_class: int = 150
    overhead_repeats: int = 2  # the arms' order alternates, so load that drifts falls on both
    # 2. search efficiency: seeds of each searcher replayed over the recorded table; random search
    # is cheap to replay and heavy-tailed, so it gets more seeds for a stable median
    search_seeds: int = 100
    search_random_seeds: int = 500
    search_max_trials: int = 400
    # 3. frozen-feature cache: one `frozen` trial per backbone, cache on and off
    cache_backbones: tuple[str, ...] = DEMO_BACKBONES
    cache_epochs: int = 5
    # 4. training step: (model, image size, batch size); rounds of `step_batches` steps (CPU) or epochs (CUDA)
    step_models: tuple[tuple[str, int, int], ...] = (
        ("test_resnet", 32, 16),
        ("test_convnext", 32, 16),
        ("mobilenetv3_small_050", 32, 16),
    )
    step_cuda_models: tuple[tuple[str, int, int], ...] = ()
    step_batches: int = 12
    step_repeats: int = 3
    # 5. searcher: suggestions timed after this many trials
    searcher_prior_trials: int = 990
    searcher_timed: int = 21
    # 6. tracking: rounds of trials x epochs logged to a fresh SQLite store
    tracking_rounds: int = 3
    tracking_trials: int = 10
    tracking_epochs: int = 10
    # 7. many short trials: data-free trials through the whole driver, two at a time
    scale_trials: int = 500
    scale_epoch_s: float = 0.5  # ASHA lets a trial run 1, 2 or 4 epochs: about a second on average
    # 8. images decoded once: a generated folder of JPEG photos fed both ways, epochs alternating
    images_count: int = 2000
    images_rounds: int = 3
    # 9. checkpoints: one trial of each unfreeze schedule per backbone, new format against the old
    checkpoint_demo: tuple[str, ...] = ("test_resnet", "test_convnext")
    checkpoint_large: tuple[str, ...] = ("resnet50",)  # tens of millions of parameters, at 32 px on the CPU


QUICK = Profile("quick")
FULL = Profile(
    "full",
    overhead_epochs=40,
    overhead_repeats=4,
    search_seeds=400,
    search_random_seeds=2000,
    cache_epochs=10,
    step_models=(
        ("test_resnet", 32, 16),
        ("test_convnext", 32, 16),
        ("mobilenetv3_small_050", 32, 16),
        ("test_vit", 32, 16),
        ("resnet18", 64, 32),
    ),
    step_cuda_models=(("resnet50", 224, 64), ("vit_small_patch16_224", 224, 64)),
    step_batches=20,
    step_repeats=5,
    searcher_timed=41,
    tracking_rounds=5,
    scale_trials=1000,
    images_rounds=5,
    checkpoint_demo=DEMO_BACKBONES,
)
# For the test suite: every code path, tiny sizes.
SMOKE = Profile(
    "smoke",
    overhead_epochs=2,
    overhead_train_per_class=10,
    search_seeds=2,
    search_random_seeds=2,
    search_max_trials=30,
    cache_backbones=("test_resnet",),
    cache_epochs=2,
    step_models=(("test_resnet", 32, 8),),
    step_batches=2,
    step_repeats=2,
    searcher_prior_trials=12,
    searcher_timed=2,
    tracking_rounds=1,
    tracking_trials=2,
    tracking_epochs=2,
    scale_trials=6,
    scale_epoch_s=0.05,
    images_count=40,
    images_rounds=2,
    checkpoint_demo=("test_resnet",),
    checkpoint_large=("test_convnext",),
)
PROFILES = {p.name: p for p in (QUICK, FULL, SMOKE)}
