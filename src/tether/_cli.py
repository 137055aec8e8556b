"""
The ``tether`` command line.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import anyio

from tether._registry import default_registry


EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


def _providers(args: argparse.Namespace) -> int:
    infos = default_registry().info()
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "name": i.name,
                        "source": i.source,
                        "value": i.value,
                        "distribution": i.distribution,
                        "version": i.version,
                        "error": i.error,
                    }
                    for i in infos
                ],
                indent=2,
            )
        )
        return EXIT_OK
    if not infos:
        print("no providers installed")
        return EXIT_OK
    width = max(len(i.name) for i in infos)
    for i in infos:
        origin = f"{i.distribution or '-'} {i.version or ''}".strip()
        status = f"  ERROR: {i.error}" if i.error else ""
        print(f"{i.name:<{width}}  {origin:<28} {i.value}{status}")
    return EXIT_ERROR if any(i.error for i in infos) else EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from tether._demo import run_demo  # noqa: PLC0415

    return anyio.run(run_demo, args.backend, backend=args.backend)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tether", description="Keep remote sessions alive and honest."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("providers", help="list installed providers and load errors")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_providers)
    d = sub.add_parser(
        "demo", help="run sessions on every first-party provider's emulator"
    )
    d.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    d.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
