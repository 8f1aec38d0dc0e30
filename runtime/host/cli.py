"""The `unidit` command line."""
from __future__ import annotations

import argparse
import json
import sys


def _add_bench(subparsers) -> None:
    from ..bench import BENCHMARKS

    bench = subparsers.add_parser("bench", help="measure speed: figures and side-by-side ratios",
                                  description="Run one benchmark and print its figures.")
    bench.add_argument("name", choices=sorted(BENCHMARKS), help="which benchmark to run")
    bench.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    bench.set_defaults(handler=_run_bench)


def _run_bench(args) -> int:
    from ..bench import run_benchmark

    figures = run_benchmark(args.name, progress=not args.json)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        width = max(len(key) for key in figures)
        for key, value in figures.items():
            print(f"{key:<{width}}  {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unidit", description="UniDiT: one diffusion transformer for images, "
                                     "videos and 3D assets.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_bench(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
