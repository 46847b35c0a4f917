"""The per-trial fine-tuning recipe, run by Ray Tune on a worker.

Reads top to bottom: build the model and transfer weights, set up data, optimizer, schedule
and regularisers, resume if Tune hands us a checkpoint, then train epoch by epoch and report.
"""

from __future__ import annotations

import math
import os
import tempfile
import time

import ray
import torch
from ray import tune
from torch import nn

from trainables.batch_size import fit_batch_size, limit_memory
from trainables.budgets import COSTS, infeasible_result, over_budget, static_costs
from trainables.checkpoints import ResumeSchedule, TrialState, load_final_weights, resume_candidates
from trainables.data import ImageSplit, TaskData
from trainables.feature_cache import FeatureCache
from trainables.gpu_memory import explain_out_of_memory
from trainables.history import last_epoch, read_history
from trainables.hyperparams import with_defaults
from trainables.loop import EVAL_METRICS, evaluate, train_one_epoch
from trainables.measure import latency_ms_per_image, snapshot, weight_drift
from trainables.models import create_backbone, layer_groups
from trainables.optimization import make_optimizer, make_schedule
from trainables.regularizers import L2SP, make_mixup
from trainables.seeds import epoch_seed, seed_epoch
from trainables.transfer import Freezer, frozen_group_count, resolve_transfer_layers, transfer_weights
from trainables.transforms import data_config, eval_transform, loader, train_transform

# Tune requires the objective in every result, and the objective may be any val_* metric.
DIVERGED_VALIDATION = {f"val_{name}": float("nan") for name in EVAL_METRICS}


def finetune(config: dict, *, task: TaskData, image_size: int | None, source_weights: dict[str, ray.ObjectRef]) -> None:
    cfg = with_defaults(config)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with explain_out_of_memory(cfg["backbone"], cfg["batch_size"], device):  # a GPU OOM says what did not fit
        _finetune(cfg, task, image_size, source_weights, device)


def _finetune(cfg: dict, task: TaskData, image_size: int | None, source_weights: dict, device: torch.device) -> None:
    cpus, gpu_share = _trial_resources()
    torch.set_num_threads(cpus)
    torch.manual_seed(cfg["seed"])

    # Deployment budgets: parameters and MACs follow from the config (meta device), so a config
    # over budget reports its costs and stops before anything is built or trained.
    costs = dict(static_costs(cfg["backbone"], task.num_classes, image_size))
    if tune.get_checkpoint() is None and over_budget(costs, cfg):
        tune.report(infeasible_result(costs))
        return

    # Model: a new head for the target classes; the first k body groups from the source weights.
    model = create_backbone(cfg["backbone"], task.num_classes, dropout=cfg["dropout"], drop_path=cfg["drop_path"])
    groups = layer_groups(model)
    k = 0 if cfg["weights"] == "none" else resolve_transfer_layers(cfg["transfer_layers"], len(groups.body))
    if k:
        transfer_weights(model, ray.get(source_weights[cfg["backbone"]]), groups, k)
    model.to(device)
    if cfg["channels_last"] and device.type == "cuda":
        model.to(memory_format=torch.channels_last)  # faster convolutions on tensor cores
    limit_memory(device, gpu_share)  # trials packed on one GPU each keep to their share
    numerics = {"precision": cfg["precision"], "channels_last": cfg["channels_last"]}  # both ignored on CPU
    start_weights = snapshot(model)  # pretrained values of transferred groups; drift is measured from here

    # Data, preprocessed as the backbone's pretrained config says.
    data_cfg = data_config(model, image_size)
    workers = max(0, cpus - 1)
    # A decoded image folder (trainables.decoded) is cropped and augmented on tensors, on `device`.
    val_batches = loader(task.val, eval_transform(data_cfg), batch_size=256, workers=workers, device=device)
    augmentation = train_transform(data_cfg, cfg["augment"], hflip=cfg["hflip"])
    # While the transferred prefix is frozen and its inputs deterministic, its outputs are computed
    # once (and shared with other trials) instead of every epoch; see feature_cache.py.
    features = FeatureCache(model, groups, task, data_cfg, cfg, device=device, workers=workers)

    # AdamW over every parameter (so unfreezing later needs no rebuild), layer decay, warmup + cosine.
    optimizer = make_optimizer(model, cfg)
    scheduler = make_schedule(optimizer, cfg)
    max_epochs = cfg["max_epochs"]
    freezer = Freezer(model, groups)
    mixup = make_mixup(cfg["mixup"], cfg["cutmix"], cfg["label_smoothing"], task.num_classes)
    l2sp = L2SP(model, groups, k, cfg["l2sp"], reference=start_weights) if cfg["l2sp"] > 0 and k else None

    def frozen_at(epoch: int) -> int:  # body groups frozen during `epoch`, by the unfreeze schedule
        return frozen_group_count(
            cfg["unfreeze"],
            epoch=epoch,
            k=k,
            num_body_groups=len(groups.body),
            unfreeze_every=cfg["unfreeze_every"],
            lp_epochs=cfg["lp_epochs"],
        )

    # Resume: the newest resume point, then the epochs after it that the record already holds, re-run
    # without reporting them (see checkpoints.py: what a checkpoint holds, and when).
    state, resume_points = TrialState(model, optimizer, groups), ResumeSchedule(max_epochs)
    resumed, history = _restore(state, device)
    reported = last_epoch(history)
    # Latency on this trial's device, before the first epoch; a resumed trial keeps what it measured then.
    latency = COSTS["latency_ms"]
    costs[latency] = history[0]["metrics"].get(latency) if history else None
    if costs[latency] is None:
        costs[latency] = latency_ms_per_image(model, data_cfg["input_size"], device)
        if not history and over_budget(costs, cfg):
            tune.report(infeasible_result(costs))
            return
    if reported >= max_epochs:  # the driver died after the final checkpoint: tell Tune how the trial ended
        tune.report(history[-1]["metrics"])
        return
    # The largest training batch that fits this trial's share of the GPU, batch_size at most (searched
    # once per sweep and backbone; see batch_size.py); the CPU keeps batch_size, a resumed trial its own.
    batch_size = history[-1]["metrics"].get("batch_size") if history else None
    batch_size = batch_size or fit_batch_size(model, data_cfg["input_size"], cfg, device, gpu_share)

    for epoch in range(resumed + 1, max_epochs + 1):
        freezer.freeze_first(frozen_at(epoch))
        scheduler.step(epoch - 1)
        seed_epoch(cfg["seed"], epoch)
        freezer.train()
        started = time.perf_counter()
        shuffle_seed = epoch_seed(cfg["seed"], epoch)
        cached = features.epoch(freezer.num_frozen)
        if cached is None:
            net, eval_batches = model, val_batches
            train_batches = loader(
                task.train,
                augmentation,
                batch_size=batch_size,
                shuffle_seed=shuffle_seed,
                workers=workers,
                device=device,
            )
        else:  # train and evaluate only what follows the frozen prefix, on its cached outputs
            net, eval_batches = cached.suffix, cached.val_batches()
            train_batches = cached.train_batches(batch_size=batch_size, shuffle_seed=shuffle_seed)
        stats = train_one_epoch(
            net,
            train_batches,
            optimizer,
            device=device,
            label_smoothing=cfg["label_smoothing"],
            mixup=mixup,
            l2sp=l2sp,
            **numerics,
        )
        if not math.isfinite(stats.loss):  # stop the trial; NaN validation metrics mark it failed downstream
            tune.report({"epoch": epoch, "train_loss": stats.loss, "diverged": 1, **DIVERGED_VALIDATION})
            return
        if epoch <= reported:
            continue  # re-run to where the record is: reported before the trial was interrupted
        val = evaluate(net, eval_batches, device=device, **numerics)
        metrics = {
            "epoch": epoch,
            "train_loss": stats.loss,
            **{f"val_{name}": value for name, value in val.items()},
            "lr": max(group["lr"] for group in optimizer.param_groups),
            "frozen_groups": freezer.num_frozen,
            "transferred_groups": k,  # of the backbone's body groups, which it reports too
            "body_groups": len(groups.body),
            "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "epoch_time_s": time.perf_counter() - started,
            "batch_size": batch_size,
            "feature_cache": int(cached is not None),
            "train_images_per_s": stats.images_per_s,
            **costs,  # total_params, macs, latency_ms
            **weight_drift(model, start_weights, groups),
            "node_id": ray.get_runtime_context().get_node_id(),  # which machine ran this epoch
        }
        history.append({"metrics": metrics, "timestamp": time.time()})
        untouched = min(frozen_at(e) for e in range(1, epoch + 1))  # groups frozen since the first epoch
        _report_with_checkpoint(
            history, state, untouched=untouched, resume=resume_points.due(epoch), final=epoch == max_epochs
        )


def _trial_resources() -> tuple[int, float]:
    """(CPUs, share of a GPU) Tune gave this trial."""
    try:
        resources = tune.get_context().get_trial_resources().required_resources
        return max(1, int(resources.get("CPU", 1))), float(resources.get("GPU", 0.0))
    except Exception:  # outside a Tune session (e.g. called directly)
        return max(1, min(4, os.cpu_count() or 1)), 0.0


def _restore(state: TrialState, device: torch.device) -> tuple[int, list[dict]]:
    """If Tune resumes this trial: the epoch its newest resume point is at (0 if none is left), and
    the history its checkpoint holds."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return 0, []
    with checkpoint.as_directory() as directory:
        history = read_history(directory)
    for candidate in resume_candidates(checkpoint):
        with candidate.as_directory() as directory:
            epoch = state.read(directory, device)
        if epoch is not None and epoch <= last_epoch(history):
            return epoch, history
    return 0, history


def _report_with_checkpoint(history: list[dict], state: TrialState, *, untouched: int, resume: bool, final: bool):
    """Report the newest epoch of `history` to Tune, with a checkpoint (see checkpoints.py)."""
    with tempfile.TemporaryDirectory() as directory:
        state.write(directory, history, untouched=untouched, resume=resume, final=final)
        tune.report(history[-1]["metrics"], checkpoint=tune.Checkpoint.from_directory(directory))


def load_checkpoint_model(checkpoint_dir: str, config: dict, num_classes: int) -> nn.Module:
    """Rebuild a trial's model from its last checkpoint (for registering the best)."""
    cfg = with_defaults(config)
    model = create_backbone(cfg["backbone"], num_classes, dropout=cfg["dropout"], drop_path=cfg["drop_path"])
    load_final_weights(checkpoint_dir, model)
    return model.eval()


def evaluate_split(model: nn.Module, split: ImageSplit, image_size: int | None) -> dict[str, float]:
    """Metrics of a trained model on a split (e.g. the held-out test/ folder)."""
    batches = loader(split, eval_transform(data_config(model, image_size)), batch_size=256)
    return evaluate(model, batches, device=torch.device("cpu"))
