"""
Typed values for what the Morpheus API Gateway answers.

Every value keeps the gateway's JSON in ``raw`` (secrets removed) so nothing the
service says is lost; the typed fields are the ones tether and its users read.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import attrs

from tether import Secret


def _mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


@attrs.frozen(kw_only=True)
class Model:
    """
    One model from ``GET /api/v1/models`` or ``/models/allmodels``.

    Attributes:
        name: The model's name (the gateway's ``id`` field), e.g. ``"llama-3.3-70b"``.
        blockchain_id: The hex id on chain (``blockchainID``), ``0x`` + 64 hex digits.
        created: ``created`` as the gateway gave it (a unix time).
        tags: ``tags``.
        model_type: ``modelType``, e.g. ``"LLM"`` or ``"EMBEDDINGS"``.
    """

    name: str
    blockchain_id: str
    created: int = 0
    tags: tuple[str, ...] = ()
    model_type: str | None = None

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> Model:
        return cls(
            name=str(item.get("id", "")),
            blockchain_id=str(item.get("blockchainID", "")),
            created=_int(item.get("created")),
            tags=tuple(str(t) for t in item.get("tags") or ()),
            model_type=_str_or_none(item.get("modelType")),
        )


@attrs.frozen(kw_only=True)
class RatedBid:
    """
    One entry of ``GET /api/v1/models/ratedbids``: a provider's offer for a model.

    Attributes:
        id: The bid id (``ID``; ``Bid.Id`` is the same).
        provider: The provider's address (``Bid.Provider``).
        model_agent_id: The model's hex id (``Bid.ModelAgentId``).
        price_per_second: ``Bid.PricePerSecond`` in the token's smallest unit (wei).
        nonce: ``Bid.Nonce``.
        created_at: ``Bid.CreatedAt`` (unix time).
        deleted_at: ``Bid.DeletedAt`` (0 when live).
        score: ``Score``: higher is better; the node tries bids best first.
    """

    id: str
    provider: str
    model_agent_id: str
    price_per_second: int
    nonce: int = 0
    created_at: int = 0
    deleted_at: int = 0
    score: float = 0.0

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> RatedBid:
        bid = _mapping(item.get("Bid"))
        try:
            score = float(item.get("Score") or 0.0)
        except (TypeError, ValueError):
            score = 0.0
        return cls(
            id=str(item.get("ID") or bid.get("Id") or ""),
            provider=str(bid.get("Provider") or ""),
            model_agent_id=str(bid.get("ModelAgentId") or ""),
            price_per_second=_int(bid.get("PricePerSecond")),
            nonce=_int(bid.get("Nonce")),
            created_at=_int(bid.get("CreatedAt")),
            deleted_at=_int(bid.get("DeletedAt")),
            score=score,
        )

    def cost(self, duration: int) -> int:
        """
        What a session of *duration* seconds on this bid costs (price x duration).
        """
        return self.price_per_second * duration


@attrs.frozen(kw_only=True)
class SessionOpened:
    """
    The answer of ``POST /session/modelsession`` or ``/session/bidsession``.

    Attributes:
        session_id: The on-chain session id, ``0x...``.
        message: The gateway's message.
        api_key_prefix: The 9-character prefix of the key now holding it.
        model: The ``model_id`` exactly as sent (model sessions only; bid
            sessions have no ``model`` field).
        note: Set when the gateway used its fallback private key.
    """

    session_id: str
    message: str = ""
    # Masked: on v1.14.0, legacy keys authenticate by their prefix alone.
    api_key_prefix: str | None = attrs.field(default=None, repr=False)
    model: str | None = None
    note: str | None = None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> SessionOpened:
        return cls(
            session_id=str(body.get("session_id") or ""),
            message=str(body.get("message") or ""),
            api_key_prefix=_str_or_none(body.get("api_key_prefix")),
            model=_str_or_none(body.get("model")),
            note=_str_or_none(body.get("note")),
        )


@attrs.frozen(kw_only=True)
class SessionClosed:
    """
    The answer of ``POST /session/closesession``.

    Attributes:
        session_id: The session that was closed or marked inactive; ``None``
            when the key held none.
        message: ``"Session closed successfully"``, ``"Expired session marked
            as inactive"`` (no on-chain close) or ``"No active session found to close"``.
    """

    session_id: str | None
    message: str = ""

    @property
    def had_session(self) -> bool:
        return self.session_id is not None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> SessionClosed:
        return cls(
            session_id=_str_or_none(body.get("session_id")),
            message=str(body.get("message") or ""),
        )


class PingStatus(enum.StrEnum):
    """
    The ``status`` of ``POST /session/pingsession`` (always HTTP 200).
    """

    ALIVE = "alive"
    EXPIRED = "expired"
    DEAD = "dead"
    NO_SESSION = "no_session"
    ERROR = "error"
    #: Anything this library does not know.
    UNKNOWN = "unknown"


@attrs.frozen(kw_only=True)
class PingResult:
    """
    The answer of ``POST /session/pingsession``.

    Attributes:
        status: What the gateway found.
        message: Its message.
        session_id: The key's session, when there was one.
        error: Why a ``dead`` session died (the gateway's httpx error text).
        raw_status: ``status`` exactly as sent.
    """

    status: PingStatus
    message: str = ""
    session_id: str | None = None
    error: str | None = None
    raw_status: str = ""

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> PingResult:
        raw = str(body.get("status") or "")
        try:
            status = PingStatus(raw)
        except ValueError:
            status = PingStatus.UNKNOWN
        return cls(
            status=status,
            message=str(body.get("message") or ""),
            session_id=_str_or_none(body.get("session_id")),
            error=_str_or_none(body.get("error")),
            raw_status=raw,
        )


@attrs.frozen(kw_only=True)
class Approval:
    """
    A successful ``POST /session/approve``.

    Attributes:
        tx: The approval transaction hash.
        note: Set when the gateway used its fallback private key.
    """

    tx: str | None
    note: str | None = None


def _decimal(value: Any) -> Decimal:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return Decimal(0)


@attrs.frozen(kw_only=True)
class CreditBalance:
    """
    ``GET /api/v1/billing/balance`` on today's gateway (credits, e.g. USD).

    Attributes:
        total_available: Paid plus staking credits available now.
        paid_available: The paid bucket, net of pending holds.
        staking_available: Today's staking allowance left.
        currency: The currency code (``"USD"``).
        raw: The gateway's JSON.
    """

    total_available: Decimal
    paid_available: Decimal
    staking_available: Decimal
    currency: str = "USD"
    raw: dict[str, Any] = attrs.field(factory=dict, eq=False, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CreditBalance:
        """
        Read the gateway's body (decimals arrive as strings).
        """
        return cls(
            total_available=_decimal(data.get("total_available")),
            paid_available=_decimal(_mapping(data.get("paid")).get("available")),
            staking_available=_decimal(_mapping(data.get("staking")).get("available")),
            currency=str(data.get("currency") or "USD"),
            raw=dict(data),
        )


@attrs.frozen(kw_only=True)
class AutomationSettings:
    """
    ``GET``/``PUT /api/v1/automation/settings``.
    """

    is_enabled: bool | None
    session_duration: int | None
    user_id: int
    created_at: str
    updated_at: str

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> AutomationSettings:
        enabled = body.get("is_enabled")
        duration = body.get("session_duration")
        return cls(
            is_enabled=None if enabled is None else bool(enabled),
            session_duration=None if duration is None else _int(duration),
            user_id=_int(body.get("user_id")),
            created_at=str(body.get("created_at") or ""),
            updated_at=str(body.get("updated_at") or ""),
        )


@attrs.frozen(kw_only=True)
class Tokens:
    """
    JWTs from ``/auth/login`` or ``/auth/refresh``; masked in reprs.
    """

    access_token: Secret
    refresh_token: Secret
    token_type: str = "bearer"  # noqa: S105 -- a scheme name, not a secret


@attrs.frozen(kw_only=True)
class User:
    """
    The answer of ``POST /auth/register``.
    """

    id: int
    email: str
    name: str | None = None
    is_active: bool = True


@attrs.frozen(kw_only=True)
class ApiKeyInfo:
    """
    One key from ``GET /auth/keys`` (``APIKeyDB``); never the key itself.
    """

    id: int
    key_prefix: str
    name: str | None
    created_at: str
    is_active: bool
    is_default: bool = False
    encryption_version: int = 1

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> ApiKeyInfo:
        return cls(
            id=_int(body.get("id")),
            key_prefix=str(body.get("key_prefix") or ""),
            name=_str_or_none(body.get("name")),
            created_at=str(body.get("created_at") or ""),
            is_active=bool(body.get("is_active")),
            is_default=bool(body.get("is_default")),
            encryption_version=_int(body.get("encryption_version"), 1),
        )


@attrs.frozen(kw_only=True)
class NewApiKey:
    """
    A key just made by ``POST /auth/keys``: the only time the gateway shows it.
    """

    key: Secret
    key_prefix: str
    name: str | None = None


@attrs.frozen(kw_only=True)
class PrivateKeyStatus:
    """
    ``GET /auth/private-key``: whether a key is stored (never the key).
    """

    has_key: bool
    created_at: str | None = None
    updated_at: str | None = None


@attrs.frozen(kw_only=True)
class Delegation:
    """
    A stored delegation (``DelegationRead``).
    """

    id: int
    user_id: int
    delegate_address: str
    signed_delegation_data: str = attrs.field(repr=False)
    expiry: str | None
    is_active: bool
    created_at: str

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Delegation:
        return cls(
            id=_int(body.get("id")),
            user_id=_int(body.get("user_id")),
            delegate_address=str(body.get("delegate_address") or ""),
            signed_delegation_data=str(body.get("signed_delegation_data") or ""),
            expiry=_str_or_none(body.get("expiry")),
            is_active=bool(body.get("is_active", True)),
            created_at=str(body.get("created_at") or ""),
        )


@attrs.frozen(kw_only=True)
class ToolCall:
    """
    A tool call the model asked for (OpenAI shape).
    """

    id: str
    name: str
    arguments: str
    type: str = "function"
    index: int | None = None

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> ToolCall:
        function = _mapping(item.get("function"))
        index = item.get("index")
        return cls(
            id=str(item.get("id") or ""),
            name=str(function.get("name") or ""),
            arguments=str(function.get("arguments") or ""),
            type=str(item.get("type") or "function"),
            index=None if index is None else _int(index),
        )


@attrs.frozen(kw_only=True)
class ChatMessage:
    """
    An assistant message (or a streamed delta of one).
    """

    role: str | None
    content: str | None
    tool_calls: tuple[ToolCall, ...] = ()

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> ChatMessage:
        content = item.get("content")
        return cls(
            role=_str_or_none(item.get("role")),
            content=None if content is None else str(content),
            tool_calls=tuple(
                ToolCall.from_json(c)
                for c in item.get("tool_calls") or ()
                if isinstance(c, Mapping)
            ),
        )


@attrs.frozen(kw_only=True)
class ChatChoice:
    """
    One choice of a completion (``message``) or of a chunk (``delta``).
    """

    index: int
    message: ChatMessage
    finish_reason: str | None = None


def _choices(body: Mapping[str, Any], key: str) -> tuple[ChatChoice, ...]:
    return tuple(
        ChatChoice(
            index=_int(c.get("index")),
            message=ChatMessage.from_json(_mapping(c.get(key))),
            finish_reason=_str_or_none(c.get("finish_reason")),
        )
        for c in body.get("choices") or ()
        if isinstance(c, Mapping)
    )


@attrs.frozen(kw_only=True)
class ChatCompletion:
    """
    A ``chat.completion`` (the provider's JSON, relayed verbatim by the gateway).

    Attributes:
        raw: The whole JSON body.
    """

    id: str
    model: str | None
    created: int
    choices: tuple[ChatChoice, ...]
    usage: Mapping[str, Any] = attrs.field(factory=dict)
    raw: Mapping[str, Any] = attrs.field(factory=dict, repr=False)

    @property
    def content(self) -> str | None:
        """
        The first choice's text.
        """
        return self.choices[0].message.content if self.choices else None

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        """
        The first choice's tool calls.
        """
        return self.choices[0].message.tool_calls if self.choices else ()

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> ChatCompletion:
        return cls(
            id=str(body.get("id") or ""),
            model=_str_or_none(body.get("model")),
            created=_int(body.get("created")),
            choices=_choices(body, "message"),
            usage=_mapping(body.get("usage")),
            raw=dict(body),
        )


@attrs.frozen(kw_only=True)
class ChatChunk:
    """
    One ``chat.completion.chunk`` of a streamed completion.
    """

    id: str
    model: str | None
    created: int
    choices: tuple[ChatChoice, ...]
    raw: Mapping[str, Any] = attrs.field(factory=dict, repr=False)

    @property
    def content(self) -> str:
        """
        The first choice's text delta ("" when none).
        """
        if not self.choices:
            return ""
        return self.choices[0].message.content or ""

    @property
    def finish_reason(self) -> str | None:
        return self.choices[0].finish_reason if self.choices else None

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> ChatChunk:
        return cls(
            id=str(body.get("id") or ""),
            model=_str_or_none(body.get("model")),
            created=_int(body.get("created")),
            choices=_choices(body, "delta"),
            raw=dict(body),
        )


def join_content(chunks: Sequence[ChatChunk]) -> str:
    """
    The text of a streamed completion, from its chunks.
    """
    return "".join(c.content for c in chunks)
