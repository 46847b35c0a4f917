"""`orchestrator` command line: thin wrappers over library functions.

User errors (bad specs, unwritable storage, ...) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from orchestrator.errors import UserError
from orchestrator.storage import redact

EXIT_USER_ERROR = 2


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orchestrator", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    sweep = sub.add_parser("sweep", help="run (or resume) the sweep a spec describes")
    sweep.add_argument("spec", type=Path, help="a search_spaces/*.yaml file")
    sweep.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS, else a local cluster)")
    sweep.add_argument("--trials", type=int, help="override search.trials")
    sweep.add_argument("--max-epochs", type=int, help="override early_stopping.max_epochs")
    sweep.add_argument("--fresh", action="store_true", help="start a new sweep instead of resuming the current one")
    sweep.set_defaults(func=_sweep)

    sync = sub.add_parser("sync", help="replay the current sweep's Ray records into MLflow (idempotent)")
    sync.add_argument("spec", type=Path)
    sync.set_defaults(func=_sync)

    validate = sub.add_parser("validate", help="check a spec and build its backbones, without training")
    validate.add_argument("spec", type=Path)
    validate.add_argument(
        "--no-data",
        action="store_true",
        help="do not look for data folders or weights files (a spec for another machine)",
    )
    validate.set_defaults(func=_validate)
    return parser


def _validate(args: argparse.Namespace) -> int:
    from orchestrator.validate import validate

    report = validate(args.spec, data=not args.no_data)
    print(report)
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from orchestrator.sweep import run_sweep

    summary = run_sweep(
        args.spec, address=args.address, trials=args.trials, max_epochs=args.max_epochs, fresh=args.fresh
    )
    print(format_summary(summary))
    return 0


def _sync(args: argparse.Namespace) -> int:
    from orchestrator.sweep import sync_sweep

    print(format_summary(sync_sweep(args.spec)))
    return 0


def format_summary(s) -> str:
    outcomes = ", ".join(f"{n} {k}" for k, n in sorted(s.outcomes.items())) or "none"
    lines = [
        "",
        f"Sweep {s.sweep_id} of experiment {s.experiment!r} {'resumed and ' if s.resumed else ''}finished "
        f"in {s.wall_time_s:.0f} s",
        f"  trials:          {sum(s.outcomes.values())} ({outcomes})",
    ]
    if s.best_trial_id:
        metrics = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in s.best_metrics.items())
        config = json.dumps({k: v for k, v in sorted(s.best_config.items())}, default=str)
        lines += [
            f"  best trial:      {s.best_trial_id}  ({metrics})",
            f"  best config:     {config}",
        ]
    else:
        lines.append("  best trial:      none reached max_epochs, so no model was registered")
    lines += [
        f"  MLflow:          {redact(s.tracking_uri)}  experiment {s.experiment!r}, parent run {s.parent_run_id}",
        f"  model:           {s.model_uri or '-'}"
        + (f"  registered as {s.registered_model!r} version {s.model_version}" if s.model_version else ""),
        f"  Optuna storage:  {s.optuna_storage}  (study {s.sweep_id!r})",
        f"  Ray results:     {s.ray_path}",
    ]
    if s.tracking_uri.startswith("sqlite:"):
        lines.append(f"  Browse:          mlflow ui --backend-store-uri {s.tracking_uri}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
