"""
``python -m benchmarks [--json] [--quick] [names...]``

Runs the named benchmarks (default: all), each printing a table and its
targets (``MISSED`` where one is missed); ``--json`` prints one JSON object per
benchmark instead, to compare runs across commits.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from benchmarks._common import Result


NAMES = ("overhead", "work", "scale", "failover", "distributed", "local", "pools")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument(
        "--json", action="store_true", help="one JSON object per benchmark"
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer rounds, for a smoke run"
    )
    parser.add_argument("names", nargs="*", choices=[*NAMES, []], metavar="name")
    args = parser.parse_args(argv)
    failed = 0
    for name in args.names or NAMES:
        module = importlib.import_module(f"benchmarks.{name}")
        try:
            result: Result = module.run(quick=args.quick)
        except Exception:
            failed += 1
            traceback.print_exc()
            result = Result(name=name, skipped="crashed: see the traceback on stderr")
        print(result.to_json() if args.json else result.human(), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
