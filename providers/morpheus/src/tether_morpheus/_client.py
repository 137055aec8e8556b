"""
A typed async client for the Morpheus API Gateway (v1.14.0 shapes).

It works over an :class:`httpx.AsyncClient` that someone else owns (tether's
manager builds it from :meth:`MorpheusProvider.client_options`), and turns every
answer into typed values or tether errors, including the failures the gateway
reports with HTTP 200.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import httpx

from tether import Secret, redact
from tether.abc import get_logger, send
from tether.exceptions import (
    ConfigError,
    OutcomeUnknownError,
    ProviderError,
    ProviderUnavailableError,
)
from tether_morpheus._config import check_api_key_format
from tether_morpheus._errors import classify, from_response
from tether_morpheus._models import (
    ApiKeyInfo,
    Approval,
    AutomationSettings,
    ChatChunk,
    ChatCompletion,
    CreditBalance,
    Delegation,
    Model,
    NewApiKey,
    PingResult,
    PrivateKeyStatus,
    RatedBid,
    SessionClosed,
    SessionOpened,
    Tokens,
    User,
)


if TYPE_CHECKING:
    from types import TracebackType


__all__ = ["ChatStream", "MorpheusClient"]

logger = get_logger("tether.morpheus")

API: Final = "/api/v1"
#: Chat bodies: these go to the gateway only when given (the gateway fills its
#: own defaults and forwards them).
_CHAT_OPTIONS: Final = frozenset(
    {
        "temperature",
        "top_p",
        "n",
        "stop",
        "max_tokens",
        "presence_penalty",
        "frequency_penalty",
    }
)


def _bearer(token: Secret | str) -> dict[str, str]:
    value = token.reveal() if isinstance(token, Secret) else token
    return {"Authorization": f"Bearer {value}"}


class MorpheusClient:
    """
    Every gateway call, typed. Do not share one between event loops.

    Args:
        http: The HTTP client; its base URL is the gateway root and its headers
            carry ``Authorization: Bearer sk-...`` for the API-key routes.
        provider: The name put on errors.
        access_token: A JWT for the account routes (or pass one per call).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        provider: str = "morpheus",
        access_token: Secret | None = None,
    ) -> None:
        self._http = http
        self._provider = provider
        self.access_token = access_token

    def __repr__(self) -> str:
        return f"<MorpheusClient provider={self._provider!r} base_url={str(self._http.base_url)!r}>"

    # -- plumbing ------------------------------------------------------------

    async def _send(
        self,
        method: str,
        url: str,
        *,
        operation: str,
        session_id: str | None = None,
        ok: Sequence[int] = (),
        **kwargs: Any,
    ) -> httpx.Response:
        response = await send(
            self._http,
            method,
            url,
            provider=self._provider,
            operation=operation,
            session_id=session_id,
            **kwargs,
        )
        if not response.is_success and response.status_code not in ok:
            raise from_response(
                response,
                provider=self._provider,
                operation=operation,
                session_id=session_id,
            )
        return response

    def _json(self, response: httpx.Response, *, operation: str) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            msg = (
                f"{self._provider} answered {response.status_code} with a body "
                "that is not JSON"
            )
            raise ProviderUnavailableError(
                msg,
                provider=self._provider,
                operation=operation,
                status_code=response.status_code,
                body=response.text[:500],
            ) from exc

    def _object(self, response: httpx.Response, *, operation: str) -> dict[str, Any]:
        body = self._json(response, operation=operation)
        if not isinstance(body, Mapping):
            msg = f"{self._provider} answered {operation} with an unexpected shape"
            raise ProviderUnavailableError(
                msg, provider=self._provider, operation=operation, body=body
            )
        return dict(body)

    def _list(self, response: httpx.Response, *, operation: str) -> list[Any]:
        body = self._json(response, operation=operation)
        if not isinstance(body, list):
            msg = f"{self._provider} answered {operation} with an unexpected shape"
            raise ProviderUnavailableError(
                msg, provider=self._provider, operation=operation, body=body
            )
        return body

    def _jwt(self, token: Secret | str | None, *, operation: str) -> dict[str, str]:
        token = token if token is not None else self.access_token
        if token is None or not (
            token.reveal() if isinstance(token, Secret) else token
        ):
            msg = f"{self._provider}: {operation} needs a JWT access token (config access_token)"
            raise ConfigError(msg, provider=self._provider)
        return _bearer(token)

    def _in_band(
        self, body: Mapping[str, Any], *, operation: str, session_id: str | None = None
    ) -> None:
        # The gateway answers some failures with HTTP 200 and {"error": {...}}.
        if body.get("error"):
            raise classify(
                200,
                body,
                provider=self._provider,
                operation=operation,
                session_id=session_id,
            )

    # -- service ---------------------------------------------------------------

    async def root(self) -> dict[str, Any]:
        """
        ``GET /``: basic API information.
        """
        response = await self._send("GET", "/", operation="root")
        return self._object(response, operation="root")

    async def health(self) -> dict[str, Any]:
        """
        ``GET /health``: ``{"status", "timestamp", "version", "database", ...}``.
        """
        response = await self._send("GET", "/health", operation="health")
        return self._object(response, operation="health")

    async def openapi(self) -> dict[str, Any] | None:
        """
        The gateway's OpenAPI document, or ``None`` when it serves none.

        Tries ``/api/v1/openapi.json`` then ``/openapi.json`` (FastAPI's default).
        """
        for url in (f"{API}/openapi.json", "/openapi.json"):
            response = await self._send("GET", url, operation="openapi", ok=(404,))
            if response.status_code == 404:  # noqa: PLR2004
                continue
            body = self._json(response, operation="openapi")
            if isinstance(body, Mapping) and isinstance(body.get("paths"), Mapping):
                return dict(body)
        return None

    async def has_session_routes(self) -> bool:
        """
        Whether the gateway has ``/api/v1/session/*`` (v1.14.x and older).

        Reads the OpenAPI document; without one, sends ``POST
        /session/modelsession`` with no query and no body, which the real route
        refuses with 422 before doing anything, and a gateway without it with 404.
        """
        document = await self.openapi()
        if document is not None:
            return f"{API}/session/modelsession" in document["paths"]
        response = await self._send(
            "POST",
            f"{API}/session/modelsession",
            operation="detect",
            ok=(400, 401, 403, 404, 405, 422),
        )
        return response.status_code not in (404, 405)

    async def balance(self) -> CreditBalance | None:
        """
        ``GET /api/v1/billing/balance``: the credits behind the API key.

        Today's gateway answers it for an API key (and checks the key's secret:
        a wrong one is 401), so it is the cheap way to check a key without an
        inference. ``None`` when the gateway has no billing (v1.14.x and older).

        Raises:
            AuthError: The key is wrong or revoked.
        """
        response = await self._send(
            "GET", f"{API}/billing/balance", operation="balance", ok=(404,)
        )
        if response.status_code == 404:  # noqa: PLR2004
            return None
        return CreditBalance.from_json(self._object(response, operation="balance"))

    # -- models ------------------------------------------------------------------

    async def models(self) -> list[Model]:
        """
        ``GET /api/v1/models``: the active models.
        """
        return await self._models(f"{API}/models", "models")

    async def all_models(self) -> list[Model]:
        """
        ``GET /api/v1/models/allmodels``: every non-deleted model on chain.
        """
        return await self._models(f"{API}/models/allmodels", "all_models")

    async def _models(self, url: str, operation: str) -> list[Model]:
        response = await self._send("GET", url, operation=operation)
        body = self._object(response, operation=operation)
        return [
            Model.from_json(m) for m in body.get("data") or () if isinstance(m, Mapping)
        ]

    async def rated_bids(self, model_id: str) -> list[RatedBid]:
        """
        ``GET /api/v1/models/ratedbids?model_id=0x...``, best score first.
        """
        response = await self._send(
            "GET",
            f"{API}/models/ratedbids",
            params={"model_id": model_id},
            operation="rated_bids",
        )
        body = self._object(response, operation="rated_bids")
        self._in_band(body, operation="rated_bids")
        bids = [
            RatedBid.from_json(b)
            for b in body.get("bids") or ()
            if isinstance(b, Mapping)
        ]
        return sorted(bids, key=lambda b: b.score, reverse=True)

    # -- sessions ------------------------------------------------------------------

    async def approve(self, amount: int) -> Approval:
        """
        ``POST /api/v1/session/approve?amount=``: let the contract spend MOR.

        The gateway answers HTTP 200 even when it fails; the ``error`` object in
        the body is raised here as a tether error.
        """
        response = await self._send(
            "POST",
            f"{API}/session/approve",
            params={"amount": int(amount)},
            operation="approve",
        )
        body = self._object(response, operation="approve")
        self._in_band(body, operation="approve")
        tx = body.get("tx")
        note = body.get("note")
        return Approval(
            tx=None if tx is None else str(tx), note=None if note is None else str(note)
        )

    @staticmethod
    def _session_body(
        session_duration: int, direct_payment: bool, failover: bool
    ) -> dict[str, Any]:
        return {
            "sessionDuration": int(session_duration),
            "directPayment": bool(direct_payment),
            "failover": bool(failover),
        }

    async def model_session(
        self,
        model_id: str,
        *,
        session_duration: int = 3600,
        direct_payment: bool = False,
        failover: bool = False,
    ) -> SessionOpened:
        """
        ``POST /api/v1/session/modelsession?model_id=``: open a session on a model.

        The gateway silently falls back to its default model for an unknown
        ``model_id``; :class:`~tether_morpheus.MorpheusProvider` checks ids first.
        """
        response = await self._send(
            "POST",
            f"{API}/session/modelsession",
            params={"model_id": model_id},
            json=self._session_body(session_duration, direct_payment, failover),
            operation="create",
        )
        return self._opened(response)

    async def bid_session(
        self,
        bid_id: str,
        *,
        session_duration: int = 3600,
        direct_payment: bool = False,
        failover: bool = False,
    ) -> SessionOpened:
        """
        ``POST /api/v1/session/bidsession?bid_id=``: open a session on one bid.

        A key already holding a session keeps it open on chain (the gateway only
        forgets it): close first.
        """
        response = await self._send(
            "POST",
            f"{API}/session/bidsession",
            params={"bid_id": bid_id},
            json=self._session_body(session_duration, direct_payment, failover),
            operation="create",
        )
        return self._opened(response)

    def _opened(self, response: httpx.Response) -> SessionOpened:
        body = self._object(response, operation="create")
        self._in_band(body, operation="create")
        opened = SessionOpened.from_json(body)
        if body.get("success") is False or not opened.session_id:
            msg = f"{self._provider} opened no session: {redact(opened.message)}"
            raise ProviderUnavailableError(
                msg,
                provider=self._provider,
                operation="create",
                status_code=response.status_code,
                body=body,
            )
        return opened

    async def close_session(self, *, session_id: str | None = None) -> SessionClosed:
        """
        ``POST /api/v1/session/closesession``: close the key's session.
        """
        response = await self._send(
            "POST",
            f"{API}/session/closesession",
            operation="close",
            session_id=session_id,
        )
        body = self._object(response, operation="close")
        self._in_band(body, operation="close", session_id=session_id)
        return SessionClosed.from_json(body)

    async def ping_session(self, *, session_id: str | None = None) -> PingResult:
        """
        ``POST /api/v1/session/pingsession``: always HTTP 200 with a ``status``.

        Costs one real inference on the session, queued behind live requests.
        """
        response = await self._send(
            "POST",
            f"{API}/session/pingsession",
            operation="ping",
            session_id=session_id,
        )
        return PingResult.from_json(self._object(response, operation="ping"))

    # -- chat ----------------------------------------------------------------------

    def _chat_body(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        model: str | None,
        session_id: str | None,
        stream: bool,
        tools: Sequence[Mapping[str, Any]] | None,
        tool_choice: str | Mapping[str, Any] | None,
        options: Mapping[str, Any],
    ) -> dict[str, Any]:
        unknown = sorted(set(options) - _CHAT_OPTIONS)
        if unknown:
            from tether.exceptions import InvalidParameterError  # noqa: PLC0415

            msg = f"{self._provider}: unknown chat option {unknown[0]!r}"
            raise InvalidParameterError(
                msg,
                field=unknown[0],
                allowed=", ".join(sorted(_CHAT_OPTIONS)),
                provider=self._provider,
            )
        if not messages:
            from tether.exceptions import InvalidParameterError  # noqa: PLC0415

            msg = f"{self._provider}: chat needs at least one message"
            raise InvalidParameterError(msg, field="messages", provider=self._provider)
        body: dict[str, Any] = {
            "messages": [dict(m) for m in messages],
            "stream": stream,
        }
        if model is not None:
            body["model"] = model
        if session_id is not None:
            body["session_id"] = session_id
        if tools is not None:
            body["tools"] = [dict(t) for t in tools]
        if tool_choice is not None:
            body["tool_choice"] = (
                tool_choice if isinstance(tool_choice, str) else dict(tool_choice)
            )
        body.update({k: v for k, v in options.items() if v is not None})
        return body

    async def chat_completions(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        model: str | None = None,
        session_id: str | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        **options: Any,
    ) -> ChatCompletion:
        """
        ``POST /api/v1/chat/completions`` (JSON).

        Args:
            messages: OpenAI messages.
            model: The model name or id (chooses the key's session; not forwarded).
            session_id: Use this session as-is (the gateway skips its own session
                logic, so no model switch can close anything).
            tools: OpenAI tool definitions.
            tool_choice: ``"auto"``, ``"none"`` or ``{"type", "function"}``.
            **options: ``temperature``, ``top_p``, ``n``, ``stop``, ``max_tokens``,
                ``presence_penalty``, ``frequency_penalty``.
        """
        body = self._chat_body(
            messages,
            model=model,
            session_id=session_id,
            stream=False,
            tools=tools,
            tool_choice=tool_choice,
            options=options,
        )
        response = await self._send(
            "POST",
            f"{API}/chat/completions",
            json=body,
            headers={"Accept": "application/json"},
            operation="chat",
            session_id=session_id,
        )
        data = self._object(response, operation="chat")
        self._in_band(data, operation="chat", session_id=session_id)
        return ChatCompletion.from_json(data)

    async def stream_chat_completions(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        model: str | None = None,
        session_id: str | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        on_outcome: Callable[[ProviderError | None], None] | None = None,
        **options: Any,
    ) -> ChatStream:
        """
        ``POST /api/v1/chat/completions`` with ``stream: true`` (SSE).

        The request is sent and its status checked before this returns; iterate
        the :class:`ChatStream` (ideally ``async with`` it) for typed chunks.

        Args:
            messages: OpenAI messages.
            model: The model name or id.
            session_id: Use this session as-is.
            tools: OpenAI tool definitions.
            tool_choice: ``"auto"``, ``"none"`` or ``{"type", "function"}``.
            on_outcome: Called once when the stream ends: with ``None`` after
                ``[DONE]``, or with the error it raises (in-band errors, a
                truncated or dropped stream).
            **options: Chat options, as for :meth:`chat_completions`.
        """
        body = self._chat_body(
            messages,
            model=model,
            session_id=session_id,
            stream=True,
            tools=tools,
            tool_choice=tool_choice,
            options=options,
        )
        request = self._http.build_request(
            "POST",
            f"{API}/chat/completions",
            json=body,
            headers={"Accept": "text/event-stream"},
        )
        try:
            response = await self._http.send(request, stream=True)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            msg = f"{self._provider} could not be reached: {type(exc).__name__}"
            raise ProviderUnavailableError(
                msg, provider=self._provider, operation="chat", session_id=session_id
            ) from exc
        except (
            httpx.TimeoutException,
            httpx.NetworkError,
            httpx.RemoteProtocolError,
        ) as exc:
            msg = f"{self._provider} did not answer: {type(exc).__name__}"
            raise OutcomeUnknownError(
                msg, provider=self._provider, operation="chat", session_id=session_id
            ) from exc
        if not response.is_success:
            try:
                await response.aread()
            except httpx.HTTPError:
                pass
            finally:
                await response.aclose()
            raise from_response(
                response,
                provider=self._provider,
                operation="chat",
                session_id=session_id,
            )
        return ChatStream(
            response,
            provider=self._provider,
            session_id=session_id,
            on_outcome=on_outcome,
        )

    # -- automation ------------------------------------------------------------------

    async def automation_settings(
        self, *, access_token: Secret | str | None = None
    ) -> AutomationSettings:
        """
        ``GET /api/v1/automation/settings`` (JWT).
        """
        response = await self._send(
            "GET",
            f"{API}/automation/settings",
            headers=self._jwt(access_token, operation="automation_settings"),
            operation="automation_settings",
        )
        return AutomationSettings.from_json(
            self._object(response, operation="automation_settings")
        )

    async def update_automation_settings(
        self,
        *,
        is_enabled: bool | None = None,
        session_duration: int | None = None,
        access_token: Secret | str | None = None,
    ) -> AutomationSettings:
        """
        ``PUT /api/v1/automation/settings`` (JWT).

        Only the fields given are sent; the gateway fills the others with its
        model defaults (``is_enabled: true``, ``session_duration: 3600``), so
        send both to be sure of the result. Durations run from 60 to 86400.
        """
        body: dict[str, Any] = {}
        if is_enabled is not None:
            body["is_enabled"] = is_enabled
        if session_duration is not None:
            body["session_duration"] = int(session_duration)
        response = await self._send(
            "PUT",
            f"{API}/automation/settings",
            json=body,
            headers=self._jwt(access_token, operation="update_automation_settings"),
            operation="update_automation_settings",
        )
        return AutomationSettings.from_json(
            self._object(response, operation="update_automation_settings")
        )

    # -- auth and account ------------------------------------------------------------------

    async def register(
        self, *, email: str, password: Secret | str, name: str | None = None
    ) -> User:
        """
        ``POST /api/v1/auth/register`` (seed-era gateways; v1.x uses Cognito).
        """
        pw = password.reveal() if isinstance(password, Secret) else password
        if len(pw) < 8:  # noqa: PLR2004
            from tether.exceptions import InvalidParameterError  # noqa: PLC0415

            msg = f"{self._provider}: password must have at least 8 characters"
            raise InvalidParameterError(
                msg,
                field="password",
                allowed="8 characters or more",
                provider=self._provider,
            )
        body: dict[str, Any] = {"email": email, "password": pw}
        if name is not None:
            body["name"] = name
        response = await self._send(
            "POST",
            f"{API}/auth/register",
            json=body,
            operation="register",
        )
        data = self._object(response, operation="register")
        return User(
            id=int(data.get("id") or 0),
            email=str(data.get("email") or ""),
            name=None if data.get("name") is None else str(data["name"]),
            is_active=bool(data.get("is_active", True)),
        )

    def _tokens(self, response: httpx.Response, *, operation: str) -> Tokens:
        data = self._object(response, operation=operation)
        try:
            return Tokens(
                access_token=Secret(str(data["access_token"])),
                refresh_token=Secret(str(data["refresh_token"])),
                token_type=str(data.get("token_type") or "bearer"),
            )
        except KeyError:
            msg = f"{self._provider} answered {operation} without tokens"
            raise ProviderUnavailableError(
                msg, provider=self._provider, operation=operation, body=data
            ) from None

    async def login(self, *, email: str, password: Secret | str) -> Tokens:
        """
        ``POST /api/v1/auth/login``: JWTs for the account routes.

        The access token is also kept on this client for later account calls.
        """
        pw = password.reveal() if isinstance(password, Secret) else password
        response = await self._send(
            "POST",
            f"{API}/auth/login",
            json={"email": email, "password": pw},
            operation="login",
        )
        tokens = self._tokens(response, operation="login")
        self.access_token = tokens.access_token
        return tokens

    async def refresh(self, refresh_token: Secret | str) -> Tokens:
        """
        ``POST /api/v1/auth/refresh``: new JWTs from a refresh token.
        """
        token = (
            refresh_token.reveal()
            if isinstance(refresh_token, Secret)
            else refresh_token
        )
        response = await self._send(
            "POST",
            f"{API}/auth/refresh",
            json={"refresh_token": token},
            operation="refresh",
        )
        tokens = self._tokens(response, operation="refresh")
        self.access_token = tokens.access_token
        return tokens

    async def api_keys(
        self, *, access_token: Secret | str | None = None
    ) -> list[ApiKeyInfo]:
        """
        ``GET /api/v1/auth/keys`` (JWT).
        """
        response = await self._send(
            "GET",
            f"{API}/auth/keys",
            headers=self._jwt(access_token, operation="api_keys"),
            operation="api_keys",
        )
        return [
            ApiKeyInfo.from_json(k)
            for k in self._list(response, operation="api_keys")
            if isinstance(k, Mapping)
        ]

    async def create_api_key(
        self, *, name: str | None = None, access_token: Secret | str | None = None
    ) -> NewApiKey:
        """
        ``POST /api/v1/auth/keys`` (JWT): the only time the key is shown.
        """
        response = await self._send(
            "POST",
            f"{API}/auth/keys",
            json={"name": name},
            headers=self._jwt(access_token, operation="create_api_key"),
            operation="create_api_key",
        )
        data = self._object(response, operation="create_api_key")
        key = str(data.get("key") or "")
        try:
            check_api_key_format(key)
        except ConfigError:
            msg = f"{self._provider} answered create_api_key with a malformed key"
            raise ProviderUnavailableError(
                msg, provider=self._provider, operation="create_api_key", body=data
            ) from None
        return NewApiKey(
            key=Secret(key),
            key_prefix=str(data.get("key_prefix") or key[:9]),
            name=None if data.get("name") is None else str(data["name"]),
        )

    async def delete_api_key(
        self, key_id: int, *, access_token: Secret | str | None = None
    ) -> ApiKeyInfo:
        """
        ``DELETE /api/v1/auth/keys/{key_id}`` (JWT): deactivates the key.

        The key's blockchain session stays open.
        """
        response = await self._send(
            "DELETE",
            f"{API}/auth/keys/{int(key_id)}",
            headers=self._jwt(access_token, operation="delete_api_key"),
            operation="delete_api_key",
        )
        return ApiKeyInfo.from_json(self._object(response, operation="delete_api_key"))

    async def store_private_key(
        self, private_key: Secret | str, *, access_token: Secret | str | None = None
    ) -> dict[str, Any]:
        """
        ``POST /api/v1/auth/private-key`` (JWT): store (replace) the wallet key.
        """
        key = private_key.reveal() if isinstance(private_key, Secret) else private_key
        response = await self._send(
            "POST",
            f"{API}/auth/private-key",
            json={"private_key": key},
            headers=self._jwt(access_token, operation="store_private_key"),
            operation="store_private_key",
        )
        result: dict[str, Any] = redact(
            self._object(response, operation="store_private_key")
        )
        return result

    async def private_key_status(
        self, *, access_token: Secret | str | None = None
    ) -> PrivateKeyStatus:
        """
        ``GET /api/v1/auth/private-key`` (JWT): whether a key is stored.
        """
        response = await self._send(
            "GET",
            f"{API}/auth/private-key",
            headers=self._jwt(access_token, operation="private_key_status"),
            operation="private_key_status",
        )
        data = self._object(response, operation="private_key_status")
        return PrivateKeyStatus(
            has_key=bool(data.get("has_key")),
            created_at=None
            if data.get("created_at") is None
            else str(data["created_at"]),
            updated_at=None
            if data.get("updated_at") is None
            else str(data["updated_at"]),
        )

    async def delete_private_key(
        self, *, access_token: Secret | str | None = None
    ) -> dict[str, Any]:
        """
        ``DELETE /api/v1/auth/private-key`` (JWT).
        """
        response = await self._send(
            "DELETE",
            f"{API}/auth/private-key",
            headers=self._jwt(access_token, operation="delete_private_key"),
            operation="delete_private_key",
        )
        result: dict[str, Any] = redact(
            self._object(response, operation="delete_private_key")
        )
        return result

    async def store_delegation(
        self,
        *,
        delegate_address: str,
        signed_delegation_data: str,
        expiry: str | None = None,
        is_active: bool = True,
        access_token: Secret | str | None = None,
    ) -> Delegation:
        """
        ``POST /api/v1/auth/delegation`` (JWT).
        """
        response = await self._send(
            "POST",
            f"{API}/auth/delegation",
            json={
                "delegate_address": delegate_address,
                "signed_delegation_data": signed_delegation_data,
                "expiry": expiry,
                "is_active": is_active,
            },
            headers=self._jwt(access_token, operation="store_delegation"),
            operation="store_delegation",
        )
        return Delegation.from_json(
            self._object(response, operation="store_delegation")
        )

    async def delegations(
        self,
        *,
        skip: int = 0,
        limit: int = 100,
        access_token: Secret | str | None = None,
    ) -> list[Delegation]:
        """
        ``GET /api/v1/auth/delegation?skip=&limit=`` (JWT).
        """
        response = await self._send(
            "GET",
            f"{API}/auth/delegation",
            params={"skip": skip, "limit": limit},
            headers=self._jwt(access_token, operation="delegations"),
            operation="delegations",
        )
        return [
            Delegation.from_json(d)
            for d in self._list(response, operation="delegations")
            if isinstance(d, Mapping)
        ]

    async def active_delegation(
        self, *, access_token: Secret | str | None = None
    ) -> Delegation | None:
        """
        ``GET /api/v1/auth/delegation/active`` (JWT); ``None`` when there is none.
        """
        response = await self._send(
            "GET",
            f"{API}/auth/delegation/active",
            headers=self._jwt(access_token, operation="active_delegation"),
            operation="active_delegation",
        )
        body = self._json(response, operation="active_delegation")
        return Delegation.from_json(body) if isinstance(body, Mapping) else None

    async def delete_delegation(
        self, delegation_id: int, *, access_token: Secret | str | None = None
    ) -> None:
        """
        ``DELETE /api/v1/auth/delegation/{delegation_id}`` (JWT); 204.
        """
        await self._send(
            "DELETE",
            f"{API}/auth/delegation/{int(delegation_id)}",
            headers=self._jwt(access_token, operation="delete_delegation"),
            operation="delete_delegation",
        )

    async def delete_account(
        self, *, access_token: Secret | str | None = None
    ) -> dict[str, Any]:
        """
        ``DELETE /api/v1/auth/register`` (JWT): delete the account and its data.

        Irreversible. Sessions are deleted from the gateway's database only.
        """
        response = await self._send(
            "DELETE",
            f"{API}/auth/register",
            headers=self._jwt(access_token, operation="delete_account"),
            operation="delete_account",
        )
        result: dict[str, Any] = redact(
            self._object(response, operation="delete_account")
        )
        return result


class ChatStream:
    """
    A streamed chat completion: an async iterator of :class:`ChatChunk`.

    Use it as ``async with stream: async for chunk in stream: ...``; iterating to
    the end (or to an error) closes the response too. An in-band error event
    (``data: {"error": ...}`` with HTTP 200) raises the matching tether error; a
    stream that ends without ``data: [DONE]`` raises
    :class:`~tether.exceptions.ProviderUnavailableError` (code ``stream_truncated``).
    Do not instantiate directly.

    Attributes:
        done: Whether ``[DONE]`` arrived.
        new_session_id: Set when the node's failover opened another session
            (``data: new session opened: 0x...``).
    """

    def __init__(
        self,
        response: httpx.Response,
        *,
        provider: str,
        session_id: str | None,
        on_outcome: Callable[[ProviderError | None], None] | None = None,
    ) -> None:
        self._response = response
        self._on_outcome = on_outcome
        self._provider = provider
        self._session_id = session_id
        self._lines: AsyncIterator[str] | None = None
        self._data: list[str] = []
        self._finished = False
        self.done = False
        self.new_session_id: str | None = None

    def __repr__(self) -> str:
        return f"<ChatStream provider={self._provider!r} done={self.done}>"

    async def __aenter__(self) -> ChatStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """
        Close the response (idempotent).
        """
        self._finished = True
        await self._response.aclose()

    def __aiter__(self) -> ChatStream:
        return self

    async def __anext__(self) -> ChatChunk:
        try:
            chunk = await self._next_chunk()
        except ProviderError as exc:
            self._report(exc)
            await self.aclose()
            raise
        except BaseException:
            await self.aclose()
            raise
        if chunk is None:
            self._report(None)
            await self.aclose()
            raise StopAsyncIteration
        return chunk

    def _report(self, error: ProviderError | None) -> None:
        callback, self._on_outcome = self._on_outcome, None
        if callback is not None:
            callback(error)

    def _error(
        self, message: str, *, code: str, cls: type[ProviderError]
    ) -> ProviderError:
        return cls(
            message,
            provider=self._provider,
            operation="chat",
            session_id=self._session_id,
            status_code=self._response.status_code,
            code=code,
        )

    async def _line(self) -> str | None:
        """
        The next line, or ``None`` at the end of the body.
        """
        if self._lines is None:
            self._lines = self._response.aiter_lines()
        try:
            return await self._lines.__anext__()
        except StopAsyncIteration:
            return None
        except (
            httpx.TimeoutException,
            httpx.NetworkError,
            httpx.RemoteProtocolError,
        ) as exc:
            msg = f"{self._provider} dropped the chat stream: {type(exc).__name__}"
            raise OutcomeUnknownError(
                msg,
                provider=self._provider,
                operation="chat",
                session_id=self._session_id,
            ) from exc

    async def _drain(self) -> None:
        # Read to the end, so that every stream iterator below us finishes
        # (trio warns about abandoned async generators).
        with contextlib.suppress(ProviderError):
            while await self._line() is not None:
                pass

    async def _next_chunk(self) -> ChatChunk | None:
        while not self._finished:
            line = await self._line()
            if line is None:
                self._finished = True
                payload = "\n".join(self._data)
                self._data = []
                chunk = await self._dispatch(payload) if payload else None
                if chunk is not None:
                    return chunk
                if not self.done:
                    msg = f"{self._provider} ended the chat stream without [DONE]"
                    raise self._error(
                        msg, code="stream_truncated", cls=ProviderUnavailableError
                    )
                return None
            if line.startswith(":"):
                continue
            if line.startswith("data:"):
                self._data.append(line[5:].removeprefix(" "))
                continue
            if line.strip() or not self._data:
                continue
            payload = "\n".join(self._data)
            self._data = []
            chunk = await self._dispatch(payload)
            if self.done:
                await self._drain()
                self._finished = True
                return None
            if chunk is not None:
                return chunk
        return None

    async def _dispatch(self, payload: str) -> ChatChunk | None:
        try:
            return self._event(payload)
        except ProviderError:
            await self._drain()
            self._finished = True
            raise

    def _event(self, payload: str) -> ChatChunk | None:
        payload = payload.strip()
        if payload == "[DONE]":
            self.done = True
            return None
        try:
            body = json.loads(payload)
        except ValueError:
            # The node's failover control lines are plain text.
            if payload.startswith("new session opened:"):
                self.new_session_id = payload.split(":", 1)[1].strip()
            logger.info(
                "tether.morpheus.stream_control_received", line=redact(payload[:200])
            )
            return None
        if not isinstance(body, Mapping):
            return None
        if body.get("error"):
            raise classify(
                200,
                body,
                provider=self._provider,
                operation="chat",
                session_id=self._session_id,
            )
        return ChatChunk.from_json(body)
