"""
Configuration values, and building provider configs at the edge.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import attrs

from tether._redact import Secret
from tether._validators import boolean, number, one_of
from tether.abc import ProviderConfig
from tether.exceptions import ConfigError, InvalidParameterError


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """
    How the manager retries transient failures: the one place retry policy lives.

    Only :class:`~tether.exceptions.TransientProviderError` is retried (connect
    errors, timeouts, 5xx, 429). Waits grow exponentially with full jitter; a
    ``Retry-After`` from the service is honoured (up to *retry_after_max*).

    Attributes:
        attempts: The attempt budget of one operation, shared by its retries and
            its failover candidates: a fallback never resets it.
        wait_initial: The first backoff, in seconds.
        wait_max: The longest backoff, in seconds.
        timeout: Give up retrying after this many seconds (``None``: no limit).
        retry_after_max: The longest ``Retry-After`` honoured, in seconds.

    In tests, ``RetryPolicy(attempts=2, wait_initial=0, wait_max=0)`` retries
    without waiting.
    """

    attempts: int = attrs.field(default=4, validator=number(ge=1, integer=True))
    wait_initial: float = attrs.field(default=0.2, validator=number(ge=0))
    wait_max: float = attrs.field(default=5.0, validator=number(ge=0))
    timeout: float | None = attrs.field(
        default=60.0, validator=number(gt=0, optional=True)
    )
    retry_after_max: float = attrs.field(default=60.0, validator=number(ge=0))


@attrs.frozen(kw_only=True)
class HealthPolicy:
    """
    How the manager watches sessions in the background.

    Attributes:
        enabled: Whether background pinging runs at all.
        interval: Seconds between pings; ``None`` takes each provider's config or
            capability default.
        jitter: The fraction of the interval by which pings are spread (0 to 1).
        failures_before_lost: Consecutive failed pings after which a session is
            LOST (a "not found" from the service makes it LOST at once).
        max_concurrent: How many pings may be in flight at once.
        lease_ttl: Seconds a worker's lease on a session's background work lasts
            without renewal (on a shared store); by default three ping intervals.
    """

    enabled: bool = attrs.field(default=True, validator=boolean)
    interval: float | None = attrs.field(
        default=None, validator=number(gt=0, optional=True)
    )
    jitter: float = attrs.field(default=0.1, validator=number(ge=0, le=1))
    failures_before_lost: int = attrs.field(
        default=3, validator=number(ge=1, integer=True)
    )
    max_concurrent: int = attrs.field(default=64, validator=number(ge=1, integer=True))
    lease_ttl: float | None = attrs.field(
        default=None, validator=number(gt=0, optional=True)
    )


AdmissionMode = Literal["wait", "reject", "replace"]


@attrs.frozen(kw_only=True)
class AdmissionPolicy:
    """
    What to do when a credential already holds as many live sessions as allowed.

    Attributes:
        mode: ``"wait"`` for a slot (up to *timeout*), ``"reject"`` at once with
            :class:`~tether.exceptions.AdmissionError`, or ``"replace"``: close
            the oldest live session of that credential, then create.
        timeout: Seconds to wait in ``"wait"`` mode.
        poll_interval: Seconds between looks at the store while waiting. A
            slot freed by this manager wakes the wait at once; one freed by
            another manager on a shared store is seen at the next look.
    """

    mode: AdmissionMode = attrs.field(
        default="wait", validator=one_of(("wait", "reject", "replace"))
    )
    timeout: float = attrs.field(default=30.0, validator=number(ge=0))
    poll_interval: float = attrs.field(default=0.5, validator=number(gt=0))


def _strip_optional(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _from_env(tp: Any, raw: str, *, field: str, provider: str) -> Any:
    """
    Convert an environment variable's string by the field's declared type.
    """
    tp = _strip_optional(tp)
    try:
        if tp is Secret:
            return Secret(raw)
        if tp is bool:
            lowered = raw.strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off"}:
                return False
            raise ValueError(raw)
        if tp is int:
            return int(raw)
        if tp is float:
            return float(raw)
        if tp is str or typing.get_origin(tp) is Literal:
            return raw
        return json.loads(raw)
    except ValueError:
        # The value itself may be a secret: say which variable, not what it held.
        allowed = _describe(tp)
        msg = f"{provider}: {env_var(provider, field)} must be {allowed}"
        raise InvalidParameterError(
            msg, field=field, provider=provider, allowed=allowed
        ) from None


def _describe(tp: Any) -> str:
    """
    What values of type *tp* look like, in words.
    """
    if tp is bool:
        return "true or false (also 1/0, yes/no, on/off)"
    if tp is int:
        return "a whole number"
    if tp is float:
        return "a number (e.g. 30 or 2.5)"
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    return "JSON (a list, an object, a number, or a quoted string)"


def env_var(provider: str, field: str) -> str:
    """
    The environment variable that configures *field* of *provider*.
    """
    return f"TETHER_{provider.upper().replace('-', '_')}_{field.upper()}"


def build_provider_config(
    cls: type[ProviderConfig],
    provider: str,
    given: Mapping[str, Any] | ProviderConfig | None,
    environ: Mapping[str, str],
) -> ProviderConfig:
    """
    Build and validate a provider's config from a mapping and the environment.

    Explicit values win over ``TETHER_<PROVIDER>_<FIELD>`` variables, which win
    over defaults.

    Raises:
        ConfigError: Unknown keys, missing required fields, or invalid values.
    """
    if isinstance(given, cls):
        return given
    if isinstance(given, ProviderConfig):
        msg = f"{provider}: expected a {cls.__name__}, got a {type(given).__name__}"
        raise ConfigError(msg, provider=provider)
    values = dict(given or {})
    fields = attrs.fields_dict(cls)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        msg = (
            f"{provider}: unknown config {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(sorted(fields))}"
        )
        raise ConfigError(msg, provider=provider)
    hints = typing.get_type_hints(cls)
    for name, field in fields.items():
        if name in values or not field.init:
            continue
        raw = environ.get(env_var(provider, name))
        if raw is not None:
            values[name] = _from_env(
                hints.get(name, str), raw, field=name, provider=provider
            )
    raw_url: object = values.get("base_url", "")
    if not isinstance(raw_url, str):
        msg = f"{provider}: base_url must be a URL string, not {type(raw_url).__name__}"
        raise InvalidParameterError(msg, field="base_url", provider=provider)
    try:
        return cls(**values)
    except InvalidParameterError as exc:
        if exc.provider is None:
            exc.provider = provider
        raise
    except ConfigError as exc:
        if exc.provider is not None:
            raise
        raise ConfigError(f"{provider}: {exc}", provider=provider) from None
    except TypeError as exc:
        missing = [
            n
            for n, f in fields.items()
            if f.init and f.default is attrs.NOTHING and n not in values
        ]
        if missing:
            msg = (
                f"{provider}: missing config {', '.join(map(repr, missing))} "
                f"(pass it, or set {', '.join(env_var(provider, m) for m in missing)})"
            )
            raise ConfigError(msg, provider=provider) from None
        raise ConfigError(f"{provider}: {exc}", provider=provider) from None
    except (ValueError, ArithmeticError, AttributeError) as exc:
        # A validator meeting a value it did not expect (Decimal('-sNaN'), a
        # number where a string belongs) is still bad config, not a crash.
        reason = str(exc) or type(exc).__name__
        raise ConfigError(f"{provider}: {reason}", provider=provider) from None


def _freeze(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return types.MappingProxyType(dict(value or {}))


@attrs.frozen(kw_only=True)
class Candidate:
    """
    One place a session may be created: a provider and its parameters.

    Attributes:
        provider: The provider name.
        params: The provider's create parameters (e.g. a Morpheus ``model`` or
            ``bid_id``).
        key: A name for the candidate's circuit breaker; by default the provider
            and its parameters.
    """

    provider: str = attrs.field(validator=attrs.validators.instance_of(str))
    params: Mapping[str, Any] = attrs.field(factory=dict, converter=_freeze, hash=False)
    key: str | None = None

    @property
    def breaker_key(self) -> str:
        if self.key is not None:
            return self.key
        if not self.params:
            return self.provider
        inner = ",".join(f"{k}={self.params[k]!r}" for k in sorted(self.params))
        return f"{self.provider}[{inner}]"


def _candidates(value: Iterable[Candidate]) -> tuple[Candidate, ...]:
    # Typed callers pass candidates; untyped ones get a ConfigError, not a crash.
    raw: object = value
    if isinstance(raw, str | bytes) or not isinstance(raw, Iterable):
        msg = f"candidates must be a sequence of Candidate, not {raw!r}"
        raise ConfigError(msg)
    result: tuple[object, ...] = tuple(raw)
    for item in result:
        if not isinstance(item, Candidate):
            msg = f"candidates must be Candidate values, not {item!r}"
            raise ConfigError(msg)
    return tuple(c for c in result if isinstance(c, Candidate))


@attrs.frozen(kw_only=True)
class FailoverPolicy:
    """
    Where to create a session, in order of preference.

    Candidates are tried in order; one that failed in this call is not tried
    again in it, and one whose circuit breaker is open is skipped (or waited for,
    when every candidate is cooling down). All candidates share the operation's
    attempt budget.

    Attributes:
        candidates: Where to try, best first.
        attempts_per_candidate: The most attempts one candidate may use.
        recreate_lost: Re-create a session that becomes LOST on the next
            candidate, with a ``failover`` event naming the old and the new.
    """

    candidates: tuple[Candidate, ...] = attrs.field(converter=_candidates)
    attempts_per_candidate: int = attrs.field(
        default=2, validator=number(ge=1, integer=True)
    )
    recreate_lost: bool = attrs.field(default=False, validator=boolean)

    @candidates.validator
    def _check(self, _attribute: object, value: tuple[Candidate, ...]) -> None:
        if not value:
            msg = "a failover policy needs at least one candidate"
            raise ConfigError(msg)
