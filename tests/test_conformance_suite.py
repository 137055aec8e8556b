"""
The provider conformance suite itself: it passes honest providers, and fails
dishonest ones naming the contract rule they broke.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import ClassVar

import attrs
import pytest

from tether import Session
from tether.abc import Capabilities, CreateRequest, RemoteSession
from tether.testing import (
    ConformanceTarget,
    FakeBackend,
    FakeProvider,
    ManualClock,
    ProviderConformanceTests,
)


def fake_target(
    provider: type[FakeProvider] = FakeProvider, name: str = "fake"
) -> ConformanceTarget:
    clock = ManualClock()
    backend = FakeBackend(clock=clock.time)
    return ConformanceTarget(
        name=name,
        provider=provider,
        config={"backend": backend},
        update={"note": "changed"},
        lifetime=600,
        live=backend.live_ids,
        kill=backend.kill,
        clock=clock,
    )


class NoServerTTLProvider(FakeProvider):
    """
    Honest without server_ttl: its service never ends sessions by itself.
    """

    capabilities: ClassVar[Capabilities] = attrs.evolve(
        FakeProvider.capabilities, server_ttl=False
    )

    async def create(self, request: CreateRequest) -> RemoteSession:
        remote = await super().create(attrs.evolve(request, lifetime=None))
        return attrs.evolve(remote, expires_at=None)


class NeverExpiresProvider(FakeProvider):
    """
    Dishonest: claims server_ttl, but its service never expires a session.
    """

    async def create(self, request: CreateRequest) -> RemoteSession:
        remote = await super().create(attrs.evolve(request, lifetime=None))
        return attrs.evolve(remote, expires_at=None)


class ClosesNothingProvider(NoServerTTLProvider):
    """
    Dishonest: without server_ttl, and its close ends nothing.
    """

    async def close(self, session: Session) -> None:
        return None


class ListsAnywayProvider(FakeProvider):
    """
    Dishonest: denies list, and lists all the same.
    """

    capabilities: ClassVar[Capabilities] = attrs.evolve(
        FakeProvider.capabilities, list=False
    )

    async def list(self) -> Sequence[RemoteSession]:
        return await super().list()


class AsksAnywayProvider(FakeProvider):
    """
    Dishonest: denies get, and asks the service before saying so.
    """

    capabilities: ClassVar[Capabilities] = attrs.evolve(
        FakeProvider.capabilities, get=False
    )

    async def get(self, session: Session) -> RemoteSession | None:
        with contextlib.suppress(Exception):
            await self.client.get(f"/sessions/{session.remote_id}")
        raise self.not_supported("get")


class TestFakeConformance(ProviderConformanceTests):
    """
    FakeProvider (server_ttl) passes, with the clock-driven expiry check.
    """

    @pytest.fixture(name="conformance_target")
    def _conformance_target(self) -> ConformanceTarget:
        return fake_target()


class TestNoServerTTLConformance(ProviderConformanceTests):
    """
    A provider without server_ttl passes: the manager expires its sessions.
    """

    @pytest.fixture(name="conformance_target")
    def _conformance_target(self) -> ConformanceTarget:
        return fake_target(NoServerTTLProvider)


async def test_a_false_server_ttl_claim_fails_naming_the_rule() -> None:
    """
    A provider that claims server_ttl but never expires sessions fails the
    suite, and the message states the rule it broke.
    """
    suite = ProviderConformanceTests()
    with pytest.raises(AssertionError) as info:
        await suite.test_expiry_matches_server_ttl(fake_target(NeverExpiresProvider))

    assert str(info.value) == (
        "contract: a provider that claims server_ttl must report a session past"
        " its lifetime as EXPIRED or GONE (ping returned ALIVE)"
    )


async def test_a_manager_expiry_that_closes_nothing_fails_naming_the_rule() -> None:
    """
    Without server_ttl the manager must end the session on the service at its
    deadline; a provider whose close ends nothing fails, naming that rule.
    """
    suite = ProviderConformanceTests()
    with pytest.raises(AssertionError) as info:
        await suite.test_expiry_matches_server_ttl(fake_target(ClosesNothingProvider))

    assert str(info.value).startswith(
        "contract: without server_ttl, tether's manager expires a session at its"
        " deadline and closes it on the service ("
    )


async def test_a_denied_capability_that_works_fails_naming_the_rule() -> None:
    """
    Denying list while listing is a broken contract, named as such.
    """
    suite = ProviderConformanceTests()
    with pytest.raises(AssertionError) as info:
        await suite.test_capabilities_are_honest(fake_target(ListsAnywayProvider))

    message = str(info.value)
    assert message.startswith(
        "contract: a provider whose capabilities deny list must raise"
        " NotSupportedError for it, without sending a request (list returned"
    )


async def test_without_a_clock_expiry_is_skipped() -> None:
    """
    ConformanceTarget.clock is optional; without it expiry is not checked.
    """
    suite = ProviderConformanceTests()
    target = attrs.evolve(fake_target(NeverExpiresProvider), clock=None)
    with pytest.raises(pytest.skip.Exception, match=r"no ConformanceTarget\.clock"):
        await suite.test_expiry_matches_server_ttl(target)


async def test_a_denied_capability_that_sends_fails_naming_the_rule() -> None:
    """
    NotSupportedError after a request is still a broken contract: a denied
    operation must send nothing.
    """
    target = fake_target(AsksAnywayProvider)
    # Nothing listens there: the request is refused at once, and still counted.
    target = attrs.evolve(
        target, config={**target.config, "base_url": "http://127.0.0.1:9"}
    )
    suite = ProviderConformanceTests()
    with pytest.raises(AssertionError) as info:
        await suite.test_capabilities_are_honest(target)

    assert str(info.value).startswith(
        "contract: a provider whose capabilities deny get must raise"
        " NotSupportedError for it, without sending a request (it sent GET"
        " /sessions/fake-"
    )
