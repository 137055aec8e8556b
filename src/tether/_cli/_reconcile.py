"""
``tether reconcile`` (and its alias ``sweep``): the store against the services.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tether._cli import _args, _output
from tether._cli._context import AddCommand, Context, run
from tether._cli._errors import EXIT_OK
from tether._redact import redact, redact_text
from tether.exceptions import NotSupportedError


if TYPE_CHECKING:
    from tether._manager import SessionManager


def register(add: AddCommand) -> None:
    """
    Add ``reconcile`` and ``sweep`` to the parser.
    """
    for name in ("reconcile", "sweep"):
        p = add(
            name,
            "compare the store with the services: adopt, close or forget "
            "what disagrees",
            _reconcile,
        )
        p.add_argument(
            "--dry-run",
            action="store_true",
            help="report what would change, change nothing",
        )
        p.add_argument("--provider", help="only this provider")
        p.add_argument(
            "--orphans",
            choices=["close", "adopt", "report"],
            help="what to do with remote sessions tagged by tether that the "
            "store does not hold live (default: close)",
        )
        p.add_argument(
            "--grace",
            metavar="DURATION",
            type=_args.grace,
            help="leave creates younger than this alone (default: 5m; 0: none)",
        )
        p.add_argument(
            "--unwatched",
            choices=["report", "attach"],
            help="what to do with live sessions no manager watches (default: report)",
        )


def _reconcile(ctx: Context) -> int:
    args = ctx.args

    async def reconcile(manager: SessionManager) -> int:
        method = getattr(manager, "reconcile", None)
        if method is None:
            msg = (
                "this version of tether cannot reconcile yet "
                "(SessionManager.reconcile() is missing)"
            )
            raise NotSupportedError(msg, provider="*", operation="reconcile")
        options: dict[str, Any] = {"dry_run": args.dry_run}
        # Pass only what was given, so the manager's defaults stay its own.
        for name in ("provider", "orphans", "grace", "unwatched"):
            value = getattr(args, name)
            if value is not None:
                options[name] = value
        report = await method(**options)
        _show_report(report, json_output=ctx.json, dry_run=args.dry_run)
        return EXIT_OK

    return run(ctx, reconcile)


def _count(actions: list[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for action in actions:
        kind = str(action.get("kind"))
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def _show_report(report: Any, *, json_output: bool, dry_run: bool) -> None:
    plain = _output.plain(report)
    actions = plain.get("actions") if isinstance(plain, Mapping) else None
    if json_output:
        if isinstance(plain, dict):
            plain.setdefault("dry_run", dry_run)
            if isinstance(actions, list):
                plain["counts"] = _count(actions)
        _output.print_json(plain)
        return
    prefix = "dry run, nothing changed: " if dry_run else ""
    if not isinstance(actions, list):
        print(prefix + json.dumps(redact(plain), indent=2, default=str))
        return
    if not actions:
        print(f"{prefix}the store and the services agree")
        return
    _output.print_table(
        ["ACTION", "PROVIDER", "SESSION", "REMOTE ID", "DETAIL"],
        [
            [
                str(a.get("kind", "-")),
                str(a.get("provider", "-")),
                str(a.get("session_id") or "-"),
                str(a.get("remote_id") or "-"),
                redact_text(str(a.get("detail") or "")),
            ]
            for a in actions
        ],
    )
    summary = ", ".join(f"{n} {k}" for k, n in sorted(_count(actions).items()))
    print(f"{prefix}{summary}")
