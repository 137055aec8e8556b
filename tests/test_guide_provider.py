"""
The provider that writing-a-provider.md builds, exactly as the page shows it
(its files in docs/examples, imported, not copied), under the faults a
provider written from the docs must survive: an unreadable answer to a create,
a key the service echoes in an error, and an orphan adopted with its labels.
Its conformance suite is the one the page shows, included from here.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import tether
from tether.testing import (
    ASGIReceive,
    ASGIScope,
    ASGISend,
    ASGIServer,
    ConformanceTarget,
    ManualClock,
    ProviderConformanceTests,
    serve_asgi,
)


sys.path.insert(0, str(Path(__file__).parent.parent / "docs" / "examples"))

from writing_a_provider_1 import BoxProvider
from writing_a_provider_2 import BoxEmulator


KEY = "box-key-0123456789abcdef"


class TestBoxConformance(ProviderConformanceTests):
    @pytest.fixture(name="conformance_target")
    async def _target(self) -> AsyncIterator[ConformanceTarget]:
        clock = ManualClock()
        emulator = BoxEmulator(api_key="box-key", clock=clock.time)
        async with serve_asgi(emulator) as server:
            yield ConformanceTarget(
                clock=clock,
                name="box",
                provider=BoxProvider,
                config={"base_url": server.url, "api_key": "box-key"},
                params={"colour": "red"},
                live=lambda: set(emulator.boxes),
                kill=emulator.boxes.pop,
            )


class UnreadableCreates:
    """
    The service carries out each create, and the answer comes back unreadable
    (a proxy's page with the 201 status), as when a gateway mangles it.
    """

    def __init__(self, emulator: BoxEmulator) -> None:
        self.emulator = emulator
        self.creates = 0

    async def __call__(
        self, scope: ASGIScope, receive: ASGIReceive, send: ASGISend
    ) -> None:
        if (scope["method"], scope["path"]) != ("POST", "/boxes"):
            await self.emulator(scope, receive, send)
            return
        self.creates += 1
        body = (await receive()).get("body", b"")
        status, _ = self.emulator.handle(scope, json.loads(body))
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"<html>mangled"})


def _manager(
    server: ASGIServer,
    clock: ManualClock,
    *,
    key: str = KEY,
    store: tether.Store | str | None = None,
    **kwargs: Any,
) -> tether.SessionManager:
    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("box", BoxProvider)
    return tether.SessionManager(
        registry=registry,
        config={"box": {"base_url": server.url, "api_key": key}},
        clock=clock,
        retry=tether.RetryPolicy(attempts=3, wait_initial=0, wait_max=0),
        health_checks=False,
        environ={},
        store=store,
        **kwargs,
    )


async def test_an_unreadable_create_answer_is_found_not_repeated() -> None:
    """
    The box was made, the answer lost: the manager finds it by its tag
    instead of making a second one, and tracks it.
    """
    clock = ManualClock()
    emulator = BoxEmulator(api_key=KEY, clock=clock.time)
    faulty = UnreadableCreates(emulator)
    async with serve_asgi(faulty) as server:
        async with _manager(server, clock) as manager:
            session = await manager.create("box", labels={"team": "ml"})
            boxes = dict(emulator.boxes)
        left = dict(emulator.boxes)

    assert 1 == faulty.creates
    assert [session.remote_id] == list(boxes)
    assert tether.SessionState.ACTIVE == session.state
    assert {"team": "ml"} == dict(session.labels)
    assert {} == left  # closed at the manager's exit


async def test_a_key_the_service_echoes_never_leaves_tether(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """
    The emulator quotes a wrong key back ("invalid key ..."): the key is in
    no error text, body or repr, no log line, and not in the store's file.
    """
    clock = ManualClock()
    emulator = BoxEmulator(api_key=KEY, clock=clock.time)
    wrong = "box-key-wrong-fedcba9876543210"
    caplog.set_level("DEBUG", logger="tether")
    store = f"sqlite:///{tmp_path / 'tether.db'}"
    async with serve_asgi(emulator) as server:
        async with _manager(server, clock, key=wrong, store=store) as manager:
            with pytest.raises(tether.AuthError) as caught:
                await manager.create("box")
            [record] = await manager.list()
        answered = server.requests[-1]

    stored = b"".join(path.read_bytes() for path in tmp_path.iterdir())  # noqa: ASYNC240 -- after the manager closed the files
    seen = [
        str(caught.value),
        repr(caught.value),
        repr(caught.value.body),
        caplog.text,
        repr(record.to_dict()),
    ]
    assert 401 == caught.value.status_code
    assert "invalid key" in str(caught.value.body)  # the service did echo it
    assert answered.headers["authorization"] == f"Bearer {wrong}"
    assert [] == [text for text in seen if wrong in text]
    assert wrong.encode() not in stored
    assert {} == emulator.boxes


async def test_an_orphan_is_adopted_with_its_labels() -> None:
    """
    A box whose record is gone (its manager kept it running and took its
    store along) comes back through reconcile with the labels the service
    kept, once it is older than the grace period; one box, none lost.
    """
    clock = ManualClock()
    emulator = BoxEmulator(api_key=KEY, clock=clock.time)
    async with serve_asgi(emulator) as server:
        async with _manager(server, clock, on_exit="keep") as first:
            made = await first.create("box", labels={"team": "ml"}, colour="red")

        async with _manager(server, clock) as second:
            young = await second.reconcile(orphans="adopt")
            await clock.advance(301)
            report = await second.reconcile(orphans="adopt")
            [adopted] = await second.list()
            boxes = list(emulator.boxes)
            again = await second.reconcile(orphans="adopt")
        left = dict(emulator.boxes)

    assert () == young.actions  # another manager's fresh create, maybe
    assert [("adopted", made.remote_id)] == [
        (a.kind, a.remote_id) for a in report.actions
    ]
    assert made.remote_id == adopted.remote_id
    assert {"team": "ml"} == dict(adopted.labels)
    assert {"colour": "red"} == dict(adopted.data)
    assert [made.remote_id] == boxes
    assert () == again.actions
    assert {} == left
