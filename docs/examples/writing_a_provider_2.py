"""
Writing a provider: an emulator.
"""

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from tether.testing import ASGIReceive, ASGIScope, ASGISend


class BoxEmulator:
    """The box service, in memory."""

    def __init__(self, api_key: str, *, clock: Callable[[], float] = time.time) -> None:
        self.api_key = api_key
        self.clock = clock  # a ManualClock's .time in tests
        self.boxes: dict[str, dict[str, Any]] = {}

    async def __call__(
        self, scope: ASGIScope, receive: ASGIReceive, send: ASGISend
    ) -> None:
        body = (await receive()).get("body", b"")
        status, answer = self.handle(scope, json.loads(body) if body else None)
        payload = json.dumps(answer).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    def handle(self, scope: ASGIScope, body: Any) -> tuple[int, Any]:
        headers = dict(scope["headers"])
        presented = headers.get(b"authorization", b"").decode()
        if presented != f"Bearer {self.api_key}":
            # As real services do: the key comes back in the message.
            key = presented.removeprefix("Bearer ")
            return 401, {"error": f"invalid key {key}"}
        method, path = scope["method"], scope["path"]
        if (method, path) == ("POST", "/boxes"):
            new = {
                "id": uuid.uuid4().hex[:8],
                "status": "open",
                "created": self.clock(),
                **body,
            }
            self.boxes[new["id"]] = new
            return 201, new
        if (method, path) == ("GET", "/boxes"):
            tag = scope["query_string"].decode().removeprefix("tag=")
            return 200, [b for b in self.boxes.values() if tag in ("", b["tag"])]
        box = self.boxes.get(path.removeprefix("/boxes/"))
        if box is None:
            return 404, {"error": "no such box"}
        if method == "DELETE":
            del self.boxes[box["id"]]
            return 200, {"deleted": box["id"]}
        return 200, box


assert (
    BoxEmulator("k").handle({"headers": [], "method": "GET", "path": "/"}, None)[0]
    == 401
)
