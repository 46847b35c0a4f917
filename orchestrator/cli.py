"""`orchestrator` command line: thin wrappers over library functions.

User errors (bad specs, unwritable storage, ...) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from orchestrator.errors import UserError, error_line
from orchestrator.uris import redact

EXIT_USER_ERROR = 2
EXIT_RECORD_BROKEN = 1  # `check`: an invariant does not hold
EXIT_INTERRUPTED = 130  # as a shell reports a Ctrl-C


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        code = getattr(exc, "exit_code", EXIT_USER_ERROR)
        line = error_line(exc)  # one printable line, whatever the input held
        print(line.replace("error: ", "interrupted: ", 1) if code == EXIT_INTERRUPTED else line, file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED


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

    report = sub.add_parser("report", help="rebuild the current sweep's report and log it to its MLflow parent run")
    report.add_argument("spec", type=Path)
    report.set_defaults(func=_report)

    check = sub.add_parser("check", help="check the current sweep's record: Ray, Optuna, MLflow and the report agree")
    check.add_argument("spec", type=Path)
    check.set_defaults(func=_check)

    validate = sub.add_parser("validate", help="check a spec and build its backbones, without training")
    validate.add_argument("spec", type=Path)
    validate.add_argument(
        "--no-data",
        action="store_true",
        help="do not look for data folders or weights files (a spec for another machine)",
    )
    validate.set_defaults(func=_validate)

    rank = sub.add_parser("rank", help="rank the spec's backbones by transferability (LogME, LEEP), without training")
    rank.add_argument("spec", type=Path)
    rank.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS, else a local cluster)")
    rank.set_defaults(func=_rank)
    return parser


def _validate(args: argparse.Namespace) -> int:
    from orchestrator.run import validate

    report = validate(args.spec, data=not args.no_data)
    print(report)
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from orchestrator.run import run_sweep

    summary = run_sweep(
        args.spec, address=args.address, trials=args.trials, max_epochs=args.max_epochs, fresh=args.fresh
    )
    print(format_summary(summary))
    return _print_audit(summary.audit)


def _sync(args: argparse.Namespace) -> int:
    from orchestrator.run import sync_sweep

    summary = sync_sweep(args.spec)
    print(format_summary(summary))
    return _print_audit(summary.audit)


def _check(args: argparse.Namespace) -> int:
    from orchestrator.run import check_sweep

    return _print_audit(check_sweep(args.spec))


def _print_audit(audit) -> int:
    from orchestrator.run import INVARIANTS

    if audit is None:
        return 0
    if audit.ok:
        print(f"Record check: all {len(INVARIANTS)} invariants hold for {audit.trials} trials")
        return 0
    print(f"Record check: {len(audit.problems)} violations", file=sys.stderr)
    for problem in audit.problems:
        print(f"  {problem}", file=sys.stderr)
    return EXIT_RECORD_BROKEN


def _report(args: argparse.Namespace) -> int:
    from orchestrator.insights import terminal_summary
    from orchestrator.run import report_sweep

    print(terminal_summary(report_sweep(args.spec)))
    return 0


def _rank(args: argparse.Namespace) -> int:
    from orchestrator.run import rank_spec

    print(format_rank(rank_spec(args.spec, address=args.address)))
    return 0


def format_rank(r) -> str:
    width = max(len("backbone"), *(len(s.backbone) for s in r.scores))
    lines = [
        "",
        f"Transferability to {r.num_classes} classes ({r.train_images} training images), "
        f"from {r.weights} weights, best first (higher is better):",
        f"  {'backbone':<{width}}  {'LogME':>8}  {'LEEP':>8}  {'dim':>5}  {'seconds':>7}",
    ]
    for s in r.scores:
        leep = f"{s.leep:8.3f}" if s.leep is not None else f"{'-':>8}"
        lines.append(f"  {s.backbone:<{width}}  {s.logme:8.3f}  {leep}  {s.feature_dim:>5}  {s.seconds:7.2f}")
    lines += [f"  LEEP of {s.backbone} is undefined: {s.leep_note}" for s in r.scores if s.leep is None]
    lines.append(f"Ranked in {r.wall_time_s:.0f} s")
    lines.append(f"  MLflow:  {redact(r.tracking_uri)}  experiment {r.experiment!r}, run {r.run_id} ('rank')")
    return "\n".join(lines)


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
    if s.front:
        shown = ", ".join(s.front[:8]) + (f", ... {len(s.front) - 8} more" if len(s.front) > 8 else "")
        lines.append(f"  pareto front:    {len(s.front)} trials ({shown}), tagged pareto=true in MLflow")
    lines += [
        f"  MLflow:          {redact(s.tracking_uri)}  experiment {s.experiment!r}, parent run {s.parent_run_id}",
        f"  model:           {s.model_uri or '-'}"
        + (f"  registered as {s.registered_model!r} version {s.model_version}" if s.model_version else ""),
        f"  Optuna storage:  {s.optuna_storage}  (study {s.sweep_id!r})",
        f"  Ray results:     {s.ray_path}",
    ]
    if s.tracking_uri.startswith("sqlite:"):
        lines.append(f"  Browse:          mlflow ui --backend-store-uri {s.tracking_uri}")
    if s.report:
        lines.append(s.report)
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
