"""The learning-curve table that section 2 replays, and how it is recorded.

The demo's search space (search_spaces/layers.yaml) made finite: its four backbones, five
values of `transfer_layers`, its four unfreeze schedules and three learning rates, 240
configs; its other parameters fixed (`unfreeze_every: 1`, `lp_epochs: 2`, the rest at their
defaults). Each config is trained once for `max_epochs` by the real trainable, on the demo's
data and from the demo's pretrained source weights (pretrained here exactly as the sweep
would: `trainables.pretrain.pretrain_backbone` with the spec's settings), two at a time in
plain worker processes (`benchmarks.harness`). Each epoch's `val_acc`, wall time and CPU
time are kept.

Each config also carries what it costs where it would be deployed, so budgets and objectives such
as latency can be replayed without training: its parameters and MACs per image, counted on the
meta device (`trainables.budgets.static_costs`, as a trial does), its backbone's body layer groups
(for the unfreeze schedule's frozen groups at each epoch), and its backbone's single-image latency
on this CPU with one thread, as a `cpu: 1` trial measures it (`latency_ms_per_image`, the median of
`LATENCY_REPEATS` such measurements).

Re-record with `python -m benchmarks --record` (15-30 minutes on 2 cores; 31 on a shared one); only
the costs with `python -c "from benchmarks.curves import record_costs; record_costs()"` (seconds).
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from benchmarks.harness import TrialRecord, run_in_worker, worker_pool
from benchmarks.report import machine
from orchestrator.run import source_task, target_task
from orchestrator.spec import load_spec

DEMO_SPEC = Path(__file__).resolve().parents[1] / "search_spaces" / "layers.yaml"
TABLE = Path(__file__).resolve().parent / "data" / "learning_curves.json"
SPACE = {
    "backbone": ["test_resnet", "mobilenetv3_small_050", "test_vit", "test_convnext"],
    "transfer_layers": [0.0, 0.25, 0.5, 0.75, 1.0],
    "unfreeze": ["frozen", "full", "gradual", "lp_ft"],
    "lr": [0.001, 0.003, 0.01],
}
FIXED = {"unfreeze_every": 1, "lp_epochs": 2, "batch_size": 16}
KEYS = tuple(SPACE)
CLASSES, IMAGE_SIZE = 5, 32  # the demo's target task
LATENCY_REPEATS = 5


def key(config: dict) -> tuple:
    return tuple(config[k] for k in KEYS)


def all_configs() -> list[dict]:
    return [dict(zip(KEYS, values, strict=True)) for values in itertools.product(*SPACE.values())]


def load(path: Path = TABLE) -> dict:
    table = json.loads(path.read_text())
    table["by_key"] = {key(t["config"]): t for t in table["trials"]}
    return table


def _pretrain(args) -> tuple[str, dict]:
    from trainables.pretrain import pretrain_backbone

    backbone, task, image_size, epochs, seed, lr = args
    return backbone, pretrain_backbone(backbone, task, image_size=image_size, epochs=epochs, seed=seed, lr=lr)


def record(path: Path = TABLE, concurrency: int = 2, configs: list[dict] | None = None) -> Path:
    """Record the table. Finished trials are appended to `<table>.partial.jsonl` as they end, so
    an interrupted recording resumes where it stopped."""
    spec = load_spec(DEMO_SPEC)
    target, source = target_task(spec, str(DEMO_SPEC)), source_task(spec, str(DEMO_SPEC))
    p, seed, size = spec.weights.pretrain, spec.search.seed, spec.data.image_size
    max_epochs = spec.early_stopping.max_epochs
    run_keys = {"max_epochs": max_epochs, "weights": spec.weights.source, "seed": seed}
    started = time.time()
    print(f"Pretraining {len(SPACE['backbone'])} backbones on the demo's source task ...", flush=True)
    with ProcessPoolExecutor(concurrency, mp_context=multiprocessing.get_context("spawn")) as pool:
        jobs = [(b, source, size, p.epochs, seed, p.lr) for b in SPACE["backbone"]]
        weights = dict(pool.map(_pretrain, jobs))

    partial = path.with_suffix(".partial.jsonl")
    done = [json.loads(line) for line in partial.read_text().splitlines()] if partial.exists() else []
    recorded = {key(t["config"]) for t in done}
    todo = [c for c in configs or all_configs() if key(c) not in recorded]
    print(f"Recording {len(todo)} configs x {max_epochs} epochs, {concurrency} at a time ...", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    with (
        worker_pool(concurrency, task=target, image_size=size, source_weights=weights) as pool,
        partial.open("a") as log,
    ):
        futures = [pool.submit(run_in_worker, {**FIXED, **c, **run_keys}) for c in todo]
        for n, future in enumerate(as_completed(futures), 1):
            trial = _row(future.result())
            log.write(json.dumps(trial) + "\n")
            log.flush()
            done.append(trial)
            if n % 20 == 0:
                print(f"  {n}/{len(todo)} ({time.time() - started:.0f} s)", flush=True)
    done.sort(key=lambda t: [SPACE[k].index(t["config"][k]) for k in KEYS])
    table = {
        "about": "per-epoch val_acc, epoch times and costs of the demo space made finite; see benchmarks/curves.py",
        "recorded_with": "python -m benchmarks --record",
        "recorded_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "record_wall_s": round(time.time() - started),
        "machine": machine(),
        "spec": "search_spaces/layers.yaml",
        "space": SPACE,
        "fixed": {**FIXED, **run_keys},
        "max_epochs": max_epochs,
        "objective": {"metric": "val_acc", "mode": "max"},
    }
    _write(path, {**table, "costs": backbone_costs()}, done)
    partial.unlink()
    print(f"Recorded {len(done)} learning curves in {path} ({time.time() - started:.0f} s)", flush=True)
    return path


def backbone_costs() -> dict:
    """Each demo backbone's parameters, MACs, body layer groups and latency on this CPU."""
    import torch

    from trainables.budgets import static_costs
    from trainables.measure import latency_ms_per_image
    from trainables.models import create_backbone, layer_groups

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a trial with `cpu: 1`
    try:
        costs = {}
        for backbone in SPACE["backbone"]:
            model = create_backbone(backbone, CLASSES)
            latencies = [
                latency_ms_per_image(model, (3, IMAGE_SIZE, IMAGE_SIZE), torch.device("cpu"))
                for _ in range(LATENCY_REPEATS)
            ]
            costs[backbone] = {
                **static_costs(backbone, CLASSES, IMAGE_SIZE),
                "latency_ms": round(sorted(latencies)[len(latencies) // 2], 4),
                "latency_ms_repeats": [round(x, 4) for x in latencies],
                "body_groups": len(layer_groups(model).body),
            }
    finally:
        torch.set_num_threads(threads)
    return {"measured_on": machine(), "classes": CLASSES, "image_size": IMAGE_SIZE, "backbones": costs}


def record_costs(path: Path = TABLE) -> Path:
    """Add (or refresh) the costs of every config in a recorded table, without training."""
    table = json.loads(path.read_text())
    rows = table.pop("trials")
    table["costs"] = backbone_costs()
    _write(path, table, rows)
    return path


def _write(path: Path, table: dict, rows: list[dict]) -> None:
    costs = table["costs"]["backbones"]
    keep = ("total_params", "macs", "latency_ms")
    rows = [{**row, **{k: costs[row["config"]["backbone"]][k] for k in keep}} for row in rows]
    header = json.dumps(table, indent=1)[:-2]
    lines = ",\n".join(json.dumps(t) for t in rows)  # one trial a line
    path.write_text(f'{header},\n "trials": [\n{lines}\n ]\n}}\n')


def _row(r: TrialRecord) -> dict:
    return {
        "config": {k: r.config[k] for k in KEYS},
        "val_acc": [round(x["val_acc"], 4) for x in r.reports],
        "epoch_wall_s": [round(x, 3) for x in r.epoch_walls()],
        "epoch_cpu_s": [round(x, 3) for x in r.epoch_cpus()],
        "feature_cache": [int(x.get("feature_cache", 0)) for x in r.reports],
    }
