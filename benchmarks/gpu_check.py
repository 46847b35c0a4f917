"""The GPU path end to end, in a few minutes: `python -m benchmarks.gpu_check` on a CUDA machine.

1. Two short sweeps of a generated image folder on one GPU: resnet50, vit_small_patch16_224 and
   convnext_tiny at 224 px, bf16 autocast and channels_last (the defaults), `resources.gpu: 0.25`
   (four trials on the GPU at once), ASHA, batch_size 256 as the upper bound of the fitted batch
   size; once with the folder decoded once (the default) and once decoding it every epoch
   (ORCHESTRATOR_DECODED_SHARE=0). nvidia-smi samples the GPU every 0.5 s during each sweep.
   Figures: mean GPU utilisation and memory, the sweep's wall, epochs a second, the batch size
   each backbone was fitted to, and the record check.
2. `python -m benchmarks --full --only step` (the section that trains on the GPU: ours against a
   plain timm loop, both bf16 + channels_last, and against plain fp32); `--sections` picks others
   (e.g. step,images,checkpoints; `all` for all of --full).
Figures are printed and written to `<out>/gpu_check.json` and `.md`.

Without CUDA it says so and exits with status 2. `--dry-run` runs the same code on the CPU at toy
sizes (gpu: 0, test backbones at 32 px, smoke-sized sections): how it is tested where no GPU is
lent. The GPU run itself has not been run by its author: see README.md, "Performance".
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import torch

from benchmarks.images import make_folder

GPU = {"backbones": ["resnet50", "vit_small_patch16_224", "convnext_tiny"], "size": 224, "images": 2000,
       "trials": 8, "epochs": 4, "gpu": 0.25, "cpu": 3, "batch": 256}  # fmt: skip
SHARE_ENV = "ORCHESTRATOR_DECODED_SHARE"
DRY = {"backbones": ["test_resnet", "test_vit"], "size": 32, "images": 40,
       "trials": 4, "epochs": 2, "gpu": 0, "cpu": 1, "batch": 16}  # fmt: skip

SPEC = textwrap.dedent("""\
    experiment: gpu-check-{name}
    data: {{dataset: {{imagefolder: {folder}}}, train_per_class: null, image_size: {size}}}
    weights: {{source: none}}
    search: {{algorithm: random, trials: {trials}, concurrent: 4, seed: 0}}
    early_stopping: {{scheduler: asha, max_epochs: {epochs}, grace_period: 1, reduction_factor: 2}}
    resources: {{cpu: {cpu}, gpu: {gpu}}}
    space:
      backbone: {{type: categorical, choices: {backbones}}}
      lr: {{type: float, low: 1.0e-4, high: 1.0e-3, log: true}}
      augment: light
      hflip: 0.5
      batch_size: {batch}
      precision: bf16
      channels_last: true
    mlflow: {{register_best_as: gpu-check-{name}}}
    storage: ./runs
""")


class GpuSampler(threading.Thread):
    """nvidia-smi's utilisation (%) and memory (MiB) of GPU 0, every 0.5 s."""

    def __init__(self):
        super().__init__(daemon=True)
        self.samples: list[tuple[float, float]] = []
        self.process = None

    def run(self) -> None:
        if shutil.which("nvidia-smi") is None:
            return
        query = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"]
        self.process = subprocess.Popen([*query, "-i", "0", "-lms", "500"], stdout=subprocess.PIPE, text=True)
        for line in self.process.stdout:
            used, memory = (float(v) for v in line.split(","))
            self.samples.append((used, memory))

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()


def sweep(name: str, folder: Path, work: Path, sizes: dict, decoded: bool) -> dict:
    """One sweep in this process; its figures."""
    import ray

    from orchestrator.records import read_trial
    from orchestrator.run import run_sweep
    from orchestrator.store import Storage

    spec = work / f"{name}.yaml"
    spec.write_text(
        SPEC.format(**{**sizes, "name": name, "folder": folder, "backbones": json.dumps(sizes["backbones"])})
    )
    before = os.environ.get(SHARE_ENV)
    os.environ[SHARE_ENV] = "0.5" if decoded else "0"
    sampler = GpuSampler()
    sampler.start()
    started = time.perf_counter()
    try:
        summary = run_sweep(spec, fresh=True)
    finally:  # the caller's environment as it was (the test suite runs this in its own process)
        os.environ.pop(SHARE_ENV) if before is None else os.environ.update({SHARE_ENV: before})
    wall = time.perf_counter() - started
    sampler.stop()
    ray.shutdown()
    storage = Storage(str(work / "runs"))
    records, fitted = [], {}
    for trial_dir in sorted(p for p in Path(summary.ray_path).iterdir() if (p / "params.json").is_file()):
        trial = read_trial(storage.fs, str(trial_dir)).records
        records += trial
        backbone = json.loads((trial_dir / "params.json").read_text())["backbone"]
        fitted.setdefault(backbone, set()).update(int(r["batch_size"]) for r in trial if "batch_size" in r)
    utilisation = [u for u, _ in sampler.samples]
    return {
        "decoded": decoded,
        "wall_s": wall,
        "epochs": len(records),
        "epochs_per_s": len(records) / wall,
        "train_images_per_s_median": statistics.median(r["train_images_per_s"] for r in records),
        "gpu_utilisation_mean_pct": statistics.mean(utilisation) if utilisation else None,
        "gpu_memory_max_mib": max((m for _, m in sampler.samples), default=None),
        "fitted_batch_sizes": {k: sorted(v) for k, v in fitted.items()},
        "outcomes": summary.outcomes,
        "record_check": summary.audit.problems if summary.audit else ["no check"],
        "timings": summary.timings,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="the same steps on the CPU at toy sizes")
    parser.add_argument("--sections", default="step", help="sections of `benchmarks --full` to run ('all': every one)")
    parser.add_argument("--out", type=Path, default=Path("gpu-check"), help="where the figures are written")
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run it on a machine with a GPU, or with --dry-run", file=sys.stderr)
        return 2
    sizes = DRY if args.dry_run else GPU
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() and not args.dry_run else "cpu (dry run)"
    print(f"gpu_check on {device}: {sizes}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {"device": device, "sizes": sizes}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        make_folder(work / "photos", sizes["images"])
        results["folder_s"] = time.perf_counter() - started
        previous = Path.cwd()
        os.chdir(work)  # the sweeps' storage and MLflow store
        try:
            for name, decoded in (("decoded", True), ("per-epoch", False)):
                results[name] = sweep(name, work / "photos", work, sizes, decoded)
                print(f"[gpu_check] sweep, images {name}: {json.dumps(results[name])}", flush=True)
        finally:
            os.chdir(previous)
    results["benchmarks"] = _benchmarks(args, args.out)
    (args.out / "gpu_check.json").write_text(json.dumps(results, indent=2, default=str))
    table = _table(results)
    (args.out / "gpu_check.md").write_text(table)
    print(table)
    return 0 if all(not results[n]["record_check"] for n in ("decoded", "per-epoch")) else 1


def _benchmarks(args, out: Path) -> str:
    from benchmarks.profiles import FULL, SMOKE
    from benchmarks.run import SECTIONS, run_benchmarks

    sections = list(SECTIONS) if args.sections == "all" else args.sections.split(",")
    _, _, md_path = run_benchmarks(SMOKE if args.dry_run else FULL, sections=sections, out=out)
    return md_path.read_text()


def _table(results: dict) -> str:
    lines = ["| figure | images decoded once | decoded every epoch |", "|---|---|---|"]
    decoded, files = results["decoded"], results["per-epoch"]
    for key in (
        "gpu_utilisation_mean_pct",
        "gpu_memory_max_mib",
        "wall_s",
        "epochs_per_s",
        "train_images_per_s_median",
        "fitted_batch_sizes",
        "outcomes",
        "record_check",
    ):
        lines.append(f"| {key} | {decoded[key]} | {files[key]} |")
    return "\n".join(lines) + "\n\n" + results["benchmarks"]


if __name__ == "__main__":
    sys.exit(main())
