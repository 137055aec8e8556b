"""
Writing a provider: the config and the provider.
"""

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs

import tether
from tether.abc import (
    Capabilities,
    ClientOptions,
    CreateRequest,
    Provider,
    ProviderConfig,
    RemoteSession,
)
from tether.exceptions import InvalidParameterError


@attrs.frozen(kw_only=True)
class BoxConfig(ProviderConfig):
    base_url: str = "https://api.box.example"
    api_key: tether.Secret = attrs.field(converter=tether.Secret)


class BoxProvider(Provider[BoxConfig]):
    """Boxes on the box service: one per create, alive until deleted."""

    capabilities = Capabilities(find=True, list=True, ping_interval=60)
    config_class = BoxConfig

    @classmethod
    def client_options(cls, config: BoxConfig) -> ClientOptions:
        return ClientOptions(
            base_url=config.base_url,
            headers={"Authorization": f"Bearer {config.api_key.reveal()}"},
            timeout=config.timeout,
        )

    def parse_create(self, params: Mapping[str, Any]) -> dict[str, Any]:
        unknown = set(params) - {"colour"}
        if unknown:
            field = min(unknown)
            raise InvalidParameterError(
                f"box takes no parameter {field!r} (known: colour)",
                field=field,
                provider=self.name,
            )
        colour = params.get("colour", "brown")
        if colour not in ("brown", "red"):
            raise InvalidParameterError(
                f"colour must be 'brown' or 'red', not {colour!r}",
                field="colour",
                value=colour,
                allowed="brown or red",
                provider=self.name,
            )
        return {"colour": colour}

    def _remote(self, body: Mapping[str, Any]) -> RemoteSession:
        return RemoteSession(
            id=body["id"],
            raw_state=body["status"],
            tether_id=body["tag"],
            data={"colour": body["colour"]},
            # What the service keeps of ours: reconcile adopts a box with its
            # labels, and leaves a box younger than its grace period alone.
            labels=body.get("labels", {}),
            created_at=datetime.fromtimestamp(body["created"], UTC),
        )

    async def create(self, request: CreateRequest) -> RemoteSession:
        response = await self.request(
            "POST",
            "/boxes",
            operation="create",
            json={
                "tag": request.tether_id,
                "labels": dict(request.labels),
                **request.params,
            },
        )
        return self._remote(self.json(response, operation="create"))

    async def ping(self, session: tether.Session) -> tether.Health:
        response = await self.request(
            "GET",
            f"/boxes/{session.remote_id}",
            operation="ping",
            session_id=session.id,
            ok=(404,),
        )
        if response.status_code == 404:
            return tether.Health(
                status="gone", detail="the box service has no such box"
            )
        body = self.json(response, operation="ping")
        status = "alive" if body["status"] == "open" else "degraded"
        return tether.Health(status=status, raw_state=body["status"])

    async def close(self, session: tether.Session) -> None:
        await self.request(
            "DELETE",
            f"/boxes/{session.remote_id}",
            operation="close",
            session_id=session.id,
            ok=(404,),
        )

    async def find(self, tether_id: str) -> RemoteSession | None:
        response = await self.request(
            "GET", "/boxes", operation="find", params={"tag": tether_id}
        )
        found = self.json(response, operation="find")
        return self._remote(found[0]) if found else None

    async def list(self) -> Sequence[RemoteSession]:
        response = await self.request("GET", "/boxes", operation="list")
        return [self._remote(box) for box in self.json(response, operation="list")]


assert BoxProvider.capabilities.find
assert BoxProvider.capabilities.list
assert not BoxProvider.capabilities.update
