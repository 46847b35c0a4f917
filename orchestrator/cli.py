"""The `orchestrator` command.

A user mistake (a bad spec, a missing file, an unreachable store) is one line on stderr and exit
status 2, within a second: the spec is read and checked before torch, Ray or MLflow is imported.
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from orchestrator.errors import UserError, did_you_mean, error_line, one_line

EXIT_USER_ERROR = 2
EXIT_RECORD_BROKEN = 1  # `check`: an invariant does not hold
EXIT_INTERRUPTED = 130  # as a shell reports a Ctrl-C

DESCRIPTION = """\
Transfer-learning sweeps on Ray Tune: which pretrained backbone, how many of its layers to
transfer, how to unfreeze them and at what learning rate, searched with Optuna, stopped early
with ASHA, and recorded in MLflow (one parent run per sweep, one child run per trial, the best
model registered).
"""
EXAMPLES = """\
examples:
  orchestrator sweep search_spaces/layers.yaml          run the demo sweep, or resume it
  orchestrator list                                     the sweeps under ./runs and how far each got
  orchestrator check search_spaces/layers.yaml          check the sweep's record (Ray, Optuna, MLflow agree)
  orchestrator report search_spaces/layers.yaml         rebuild the report and print where it is
  orchestrator validate my_spec.yaml                    check a spec without running anything

exit status: 0 done; 1 the record check found a violation; 2 a user error (one line on stderr);
130 interrupted (run the same command again to resume)
"""
SPEC_HELP = "the sweep's spec, a YAML file (see search_spaces/ for examples)"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's default prints the usage too: two lines
        choice = re.match(r"argument COMMAND: invalid choice: '(.*)' \(choose from (.*)\)", message)
        if choice:
            commands = [c.strip("' ") for c in choice.group(2).split(",")]
            message = f"unknown command {choice.group(1)!r}{did_you_mean(choice.group(1), commands)}"
        print(f"error: {one_line(message)} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USER_ERROR
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
    parser = _Parser(
        prog="orchestrator",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(name: str, help: str, func, example: str, *, spec: bool = True) -> argparse.ArgumentParser:
        """A subcommand; with `spec`, its one positional argument is the spec file."""
        cmd = sub.add_parser(name, help=help, description=help[:1].upper() + help[1:] + ".", epilog=example)
        cmd.formatter_class = argparse.RawDescriptionHelpFormatter
        cmd.set_defaults(func=func)
        if spec:
            cmd.add_argument("spec", type=Path, help=SPEC_HELP)
        return cmd

    sweep = command(
        "sweep",
        "run the sweep a spec describes, or resume its current sweep",
        _sweep,
        "example: orchestrator sweep search_spaces/layers.yaml --trials 8",
    )
    sweep.add_argument("--address", help="the Ray cluster to join (default: $RAY_ADDRESS, else a local cluster)")
    sweep.add_argument("--trials", type=int, help="override search.trials (part of the sweep's identity)")
    sweep.add_argument("--max-epochs", type=int, help="override early_stopping.max_epochs (part of its identity)")
    sweep.add_argument("--fresh", action="store_true", help="start a new sweep instead of resuming the current one")

    listing = command(
        "list",
        "list the sweeps under a storage location: state, trials done, best value, compute spent",
        _list,
        "examples: orchestrator list    orchestrator list search_spaces/layers.yaml    orchestrator list --storage s3://b/p",
        spec=False,
    )
    listing.add_argument("spec", type=Path, nargs="?", help="list only this spec's experiment (and use its storage)")
    listing.add_argument("--storage", help="the storage to look in when no SPEC is given (default: ./runs)")

    command(
        "check",
        "check the current sweep's record: Ray, Optuna, MLflow and the report agree (reads only)",
        _check,
        "example: orchestrator check search_spaces/layers.yaml",
    )

    command(
        "sync",
        "replay the current sweep's records into MLflow and Optuna, without running anything",
        _sync,
        "example: orchestrator sync search_spaces/layers.yaml    (after an MLflow outage)",
    )

    command(
        "report",
        "rebuild the current sweep's report, log it to its MLflow parent run and print where it is",
        _report,
        "example: orchestrator report search_spaces/layers.yaml",
    )

    rank = command(
        "rank",
        "rank the spec's backbones by transferability (LogME, LEEP) without training",
        _rank,
        "example: orchestrator rank search_spaces/layers.yaml",
    )
    rank.add_argument("--address", help="the Ray cluster to join (default: $RAY_ADDRESS, else a local cluster)")

    validate = command(
        "validate",
        "check a spec and its data, and build its backbones on the meta device, without training",
        _validate,
        "example: orchestrator validate search_spaces/layers_cluster.yaml --no-data",
    )
    validate.add_argument(
        "--no-data",
        action="store_true",
        help="do not look for data folders or weights files (a spec for another machine)",
    )
    return parser


def _version() -> str:
    try:
        return version("orchestrator")
    except PackageNotFoundError:
        return "unknown"


def _checked(spec: Path, overrides: dict | None = None, *, local_files: bool = True) -> None:
    """Read and check the spec first: a mistake in it is reported before any heavy import."""
    from orchestrator.spec import load_spec

    load_spec(spec, overrides, local_files=local_files)


def _quiet_libraries() -> None:
    """MLflow announces each table it creates in a new store: noise among the sweep's own lines."""
    import logging
    import os

    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # MLflow sets its loggers' level from this at import
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _sweep(args: argparse.Namespace) -> int:
    overrides: dict = {}
    if args.trials is not None:
        overrides["search"] = {"trials": args.trials}
    if args.max_epochs is not None:
        overrides["early_stopping"] = {"max_epochs": args.max_epochs}
    _checked(args.spec, overrides)
    _quiet_libraries()
    from orchestrator.run import run_sweep
    from orchestrator.run.summaries import format_summary, mlflow_links

    summary = run_sweep(
        args.spec, address=args.address, trials=args.trials, max_epochs=args.max_epochs, fresh=args.fresh
    )
    print(format_summary(summary, mlflow_links(summary.tracking_uri, summary.experiment_id, summary.parent_run_id)))
    return _print_audit(summary.audit)


def _sync(args: argparse.Namespace) -> int:
    _checked(args.spec)
    _quiet_libraries()
    from orchestrator.run import sync_sweep
    from orchestrator.run.summaries import format_summary, mlflow_links

    summary = sync_sweep(args.spec)
    print(format_summary(summary, mlflow_links(summary.tracking_uri, summary.experiment_id, summary.parent_run_id)))
    return _print_audit(summary.audit)


def _check(args: argparse.Namespace) -> int:
    _checked(args.spec, local_files=False)
    _quiet_libraries()
    from orchestrator.run import check_sweep

    return _print_audit(check_sweep(args.spec))


def _list(args: argparse.Namespace) -> int:
    from orchestrator.run.summaries import format_sweeps

    if args.spec is not None and args.storage is not None:
        raise UserError("give a SPEC or --storage, not both (the spec names its storage)")
    _quiet_libraries()
    from orchestrator.run.listing import list_sweeps, storage_or_default
    from orchestrator.tracking import default_tracking_uri

    if args.spec is not None:
        from orchestrator.spec import load_spec

        spec = load_spec(args.spec, local_files=False)
        storage, experiment = storage_or_default(spec.storage), spec.experiment
        tracking_uri = default_tracking_uri(spec.mlflow.tracking_uri)
    else:
        storage, experiment = storage_or_default(args.storage), None
        tracking_uri = default_tracking_uri(None)
    print(format_sweeps(list_sweeps(storage, tracking_uri, experiment)))
    return 0


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
    _checked(args.spec, local_files=False)
    _quiet_libraries()
    from orchestrator.insights import terminal_summary
    from orchestrator.run import report_sweep

    print(terminal_summary(report_sweep(args.spec)))
    return 0


def _rank(args: argparse.Namespace) -> int:
    _checked(args.spec)
    _quiet_libraries()
    from orchestrator.run import rank_spec
    from orchestrator.run.summaries import format_rank

    print(format_rank(rank_spec(args.spec, address=args.address)))
    return 0


def _validate(args: argparse.Namespace) -> int:
    _checked(args.spec, local_files=not args.no_data)
    from orchestrator.run import validate

    print(validate(args.spec, data=not args.no_data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
