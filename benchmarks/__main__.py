"""`python -m benchmarks --quick | --full`: every comparison side by side, as JSON and a Markdown table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.profiles import FULL, QUICK
from benchmarks.run import DEFAULT_OUT, SECTIONS, failed, run_benchmarks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="a few minutes on 2 CPU cores")
    mode.add_argument("--full", action="store_true", help="bigger models, more seeds and repeats; GPU models on CUDA")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results folder (default: {DEFAULT_OUT})")
    parser.add_argument(
        "--only", help=f"comma-separated sections to run, of: {', '.join(SECTIONS)} (default: all, in that order)"
    )
    parser.add_argument(
        "--record",
        action="store_true",
        help="re-record the learning-curve table in benchmarks/data/ with the real trainable (15-30 min on 2 cores), "
        "then run --quick/--full if given",
    )
    args = parser.parse_args(argv)
    if not (args.quick or args.full or args.record):
        parser.error("say --quick or --full (and/or --record)")
    sections = [s.strip() for s in args.only.split(",")] if args.only else None
    unknown = [s for s in sections or [] if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section {unknown[0]!r}; expected some of {', '.join(SECTIONS)}")
    profile = FULL if args.full else QUICK
    if args.record:
        from benchmarks.curves import record

        record()
        if not (args.quick or args.full):
            return 0
    command = "python -m benchmarks " + " ".join(argv if argv is not None else sys.argv[1:])
    results, json_path, md_path = run_benchmarks(profile, sections=sections, out=args.out, command=command)
    print()
    print(md_path.read_text())
    print(f"Results: {json_path} and {md_path}")
    broken = failed(results)
    if broken:
        print(f"Failed sections: {', '.join(broken)} (see the errors above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
