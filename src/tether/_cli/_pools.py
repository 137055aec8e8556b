"""
``tether pools``: the warm pools whose sessions the store holds.

A pool lives in the process of the manager that made it; what another process
sees is its sessions, by their ``tether.pool`` label. Whether one is idle or
in use is that process's knowledge, not the store's.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any

from tether._cli import _output
from tether._cli._context import AddCommand, Context, run
from tether._cli._errors import EXIT_OK
from tether._lifecycle.pools import POOL_LABEL
from tether._session import SessionState


if TYPE_CHECKING:
    from tether._manager import SessionManager

#: The states shown as columns, in lifecycle order.
_STATES = (
    SessionState.CREATING,
    SessionState.ACTIVE,
    SessionState.DEGRADED,
    SessionState.CLOSING,
    SessionState.LOST,
)


def register(add: AddCommand) -> None:
    """
    Add ``pools`` to the parser.
    """
    p = add(
        "pools",
        "list warm pools by their sessions in the store (a pool's sessions: "
        f"'tether ls --label {POOL_LABEL}=NAME')",
        _pools,
    )
    p.add_argument("--provider", help="only this provider's pools")
    p.add_argument(
        "--all",
        action="store_true",
        help="also pools whose sessions have all ended",
    )


def _pools(ctx: Context) -> int:
    args = ctx.args

    async def pools(manager: SessionManager) -> int:
        sessions = await manager.list(provider=args.provider)
        found: dict[tuple[str, str], collections.Counter[str]] = {}
        for s in sessions:
            name = s.labels.get(POOL_LABEL)
            if name is None:
                continue
            counts = found.setdefault((name, s.provider), collections.Counter())
            counts[s.state.value] += 1
        rows: list[dict[str, Any]] = []
        for (name, provider), counts in sorted(found.items()):
            live = sum(counts[state.value] for state in _STATES)
            if live == 0 and not args.all:
                continue
            rows.append(
                {
                    "pool": name,
                    "provider": provider,
                    "live": live,
                    "sessions": dict(sorted(counts.items())),
                }
            )
        if ctx.json:
            _output.print_json(rows)
            return EXIT_OK
        if not rows:
            print("no pools: no session in the store carries a pool's label")
            return EXIT_OK
        _output.print_table(
            ["POOL", "PROVIDER", "LIVE", *(s.value.upper() for s in _STATES), "ENDED"],
            [
                [
                    row["pool"],
                    row["provider"],
                    str(row["live"]),
                    *(str(row["sessions"].get(s.value, 0)) for s in _STATES),
                    str(
                        sum(
                            n
                            for state, n in row["sessions"].items()
                            if state not in {s.value for s in _STATES}
                        )
                    ),
                ]
                for row in rows
            ],
        )
        return EXIT_OK

    return run(ctx, pools)
