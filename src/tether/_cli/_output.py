"""
What the CLI prints: JSON for scripts, tables and field lists for people.

``--json`` output is plain :func:`json.dumps` and never changes with the
terminal. Human output uses `rich <https://rich.readthedocs.io>`_ when it is
installed (``pip install 'tether[cli]'``) and stdout is a terminal: aligned
tables with the states in colour, honouring ``NO_COLOR``; otherwise, and always
when piped, it is plain text aligned with spaces.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, TextIO

import attrs

from tether._redact import redact, redact_text
from tether._session import SessionState


if TYPE_CHECKING:
    from rich.console import Console

    from tether._session import Health, Session


# Colours for the words that tell whether something is well; rich styles.
_STYLES: Final = {
    "active": "green",
    "alive": "green",
    "ok": "green",
    "creating": "cyan",
    "closing": "cyan",
    "degraded": "yellow",
    "missing": "yellow",
    "closed": "dim",
    "expired": "dim",
    "gone": "dim",
    "lost": "red",
    "failed": "red",
    "broken": "red",
}


def console(stream: TextIO) -> Console | None:
    """
    A rich console on *stream* when rich is installed and *stream* is a terminal.
    """
    if not stream.isatty():
        return None
    try:
        from rich.console import Console  # noqa: PLC0415
    except ImportError:
        return None
    # rich reads NO_COLOR, FORCE_COLOR and TERM=dumb itself.
    return Console(file=stream, highlight=False, soft_wrap=True)


def print_json(value: Any) -> None:
    """
    *value*, redacted, as indented JSON with sorted keys.
    """
    print(json.dumps(redact(value), indent=2, sort_keys=True, default=str))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """
    Columns aligned with two spaces, no trailing blanks.
    """
    widths = [
        max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)
    ]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in (headers, *rows)
    ]
    return "\n".join(lines)


def print_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    coloured: Sequence[int] = (),
) -> None:
    """
    Print a table; on a terminal with rich, the columns *coloured* get colours.
    """
    rich = console(sys.stdout)
    if rich is None:
        print(table(headers, rows))
        return
    from rich.table import Table  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    grid = Table(box=None, pad_edge=False, header_style="bold", show_edge=False)
    for header in headers:
        grid.add_column(header, no_wrap=True)
    for row in rows:
        grid.add_row(
            *(
                Text(cell, style=_STYLES.get(cell, "") if i in coloured else "")
                for i, cell in enumerate(row)
            )
        )
    rich.print(grid)


@contextlib.contextmanager
def waiting(message: str, *, json_output: bool) -> Iterator[None]:
    """
    A spinner on stderr while a slow call runs, for people at a terminal only
    (without rich, one line saying what it waits for); nothing when piped.
    """
    if json_output or not sys.stderr.isatty():
        yield
        return
    rich = console(sys.stderr)
    if rich is None:
        print(f"tether: {message}...", file=sys.stderr, flush=True)
        yield
        return
    with rich.status(message):
        yield


def ago(seconds: float) -> str:
    """
    A short, rounded duration: ``42s``, ``3m07s``, ``2h05m``, ``1d03h``.
    """
    whole = round(abs(seconds))
    if whole < 60:  # noqa: PLR2004
        return f"{whole}s"
    if whole < 3600:  # noqa: PLR2004
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:  # noqa: PLR2004
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def when(value: datetime | None, now: datetime) -> str:
    """
    ``in 4m00s`` or ``12s ago``, or ``-`` for none.
    """
    if value is None:
        return "-"
    delta = (value - now).total_seconds()
    return f"in {ago(delta)}" if delta >= 0 else f"{ago(delta)} ago"


def labels(values: Mapping[str, str]) -> str:
    """
    ``k=v,k2=v2``, sorted, or ``-``.
    """
    return ",".join(f"{k}={v}" for k, v in sorted(values.items())) or "-"


def session_json(session: Session) -> dict[str, Any]:
    """
    A session as a JSON-ready dict.
    """
    return session.to_dict()


def health_json(health: Health) -> dict[str, Any]:
    """
    A ping's answer as a JSON-ready dict.
    """
    return {
        "status": health.status.value,
        "ok": health.ok,
        "raw_state": health.raw_state,
        "checked_at": health.checked_at.isoformat(),
        "latency": health.latency,
        "detail": health.detail,
        "expires_at": health.expires_at.isoformat() if health.expires_at else None,
        "data": dict(health.data),
    }


def show_session(session: Session) -> None:
    """
    Every field of a session, one per line.
    """
    now = datetime.now(UTC)
    fields: list[tuple[str, str]] = [
        ("id", session.id),
        ("provider", session.provider),
        ("state", session.state.value),
        ("remote id", session.remote_id or "-"),
        ("raw state", session.raw_state or "-"),
        (
            "created",
            f"{session.created_at.isoformat()} ({when(session.created_at, now)})",
        ),
        ("updated", session.updated_at.isoformat()),
        (
            "expires",
            f"{session.expires_at.isoformat()} ({when(session.expires_at, now)})"
            if session.expires_at
            else "-",
        ),
        ("lifetime", f"{session.lifetime:g}s" if session.lifetime else "-"),
        ("labels", labels(session.labels)),
        ("params", json.dumps(redact(dict(session.params)), sort_keys=True)),
        ("data", json.dumps(redact(dict(session.data)), sort_keys=True, default=str)),
        ("credential", session.credential or "-"),
        ("error", redact_text(session.error) if session.error else "-"),
    ]
    width = max(len(k) for k, _ in fields)
    for key, value in fields:
        print(f"{key + ':':<{width + 1}}  {value}")


def show(session: Session, *, json_output: bool) -> None:
    """
    One session, as JSON for scripts or as a field list for people.
    """
    if json_output:
        print_json(session_json(session))
    else:
        show_session(session)


def plain(value: Any) -> Any:
    """
    A JSON-ready view of attrs classes, sessions, enums and containers.
    """
    if isinstance(value, SessionState):
        return value.value
    if hasattr(value, "to_dict") and callable(value.to_dict):
        return value.to_dict()
    if attrs.has(type(value)):
        return {
            f.name: plain(getattr(value, f.name))
            for f in attrs.fields(type(value))
            if not f.name.startswith("_")
        }
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value
