"""
Secrets never show: Secret, redaction of bodies, and the structlog processor.
"""

from __future__ import annotations

import pickle

import pytest

import tether
from tether._redact import redact
from tether.exceptions import AuthError


KEY = "sk-abcdef.super-secret-value"


def test_secret_masks_itself() -> None:
    """
    repr and str of a Secret never contain the value; reveal() does.
    """
    secret = tether.Secret(KEY)

    assert KEY not in repr(secret)
    assert KEY not in str(secret)
    assert KEY not in f"{secret}"
    assert KEY == secret.reveal()


def test_secret_compares_by_value() -> None:
    """
    Two secrets with one value are equal and hash alike.
    """
    assert tether.Secret("x") == tether.Secret("x")
    assert hash(tether.Secret("x")) == hash(tether.Secret("x"))
    assert tether.Secret("x") != tether.Secret("y")


def test_secret_refuses_pickling() -> None:
    """
    A secret cannot be pickled into stored state.
    """
    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(tether.Secret(KEY))


def test_secret_refuses_non_strings() -> None:
    """
    Secrets are strings.
    """
    with pytest.raises(TypeError):
        tether.Secret(42)  # type: ignore[arg-type]


def test_redact_masks_secret_keys_and_shapes() -> None:
    """
    Secret-named keys and secret-shaped strings are masked, other data kept.
    """
    body = {
        "api_key": "abc",
        "nested": [{"Authorization": "Bearer xyz"}, f"the key {KEY} leaked"],
        "X-API-Key": "k",
        "ok": 1,
    }

    result = redact(body)

    assert "***" == result["api_key"]
    assert "***" == result["X-API-Key"]
    assert "***" == result["nested"][0]["Authorization"]
    assert KEY not in result["nested"][1]
    assert 1 == result["ok"]


def test_provider_errors_keep_redacted_bodies() -> None:
    """
    An error built from a response body never carries the secret in it.
    """
    error = AuthError(
        "bad key", provider="p", status_code=401, body={"detail": f"invalid {KEY}"}
    )

    assert KEY not in repr(error.body)
    assert KEY not in str(error)


def test_processor_masks_events() -> None:
    """
    redact_secrets masks secret keys and shapes in any structlog event.
    """
    event = {"event": "x", "token": "t0ken", "msg": f"Bearer {KEY}", "n": 3}

    result = tether.redact_secrets(None, "info", event)

    assert "***" == result["token"]
    assert KEY not in result["msg"]
    assert 3 == result["n"]


QUOTED = "instavm_sk_quoted_0123456789"


def test_a_key_the_service_quotes_back_is_masked_by_value() -> None:
    """
    A key held as a Secret is masked wherever it appears in a provider error
    (its str, repr and body), whatever its shape.
    """
    key = tether.Secret(QUOTED)
    error = AuthError(
        f"Invalid API key {key.reveal()}",
        provider="sandbox",
        body={"detail": f"Invalid API key {key.reveal()}"},
    )

    for text in (str(error), repr(error), repr(error.body), repr(error.args)):
        assert QUOTED not in text
    assert "Invalid API key ***" in str(error)


def test_a_password_in_a_url_is_masked() -> None:
    """
    ``scheme://user:password@host`` keeps the user, masks the password.
    """
    assert "redis://me:***@db:6379/0" == tether.redact_text(
        "redis://me:hunter2-long@db:6379/0"
    )


async def test_a_quoted_key_never_reaches_the_stored_record() -> None:
    """
    A create refused with a message quoting the provider's key leaves a
    FAILED record whose error has the key masked.
    """
    from tether.testing import FakeBackend, FakeProvider  # noqa: PLC0415

    class Quoting(FakeProvider):
        async def create(self, request):
            raise AuthError(
                f"Invalid API key {self.config.api_key.reveal()}",
                provider=self.name,
                operation="create",
            )

    registry = tether.ProviderRegistry(entry_points=False)
    registry.register("fake", Quoting)
    store = tether.MemoryStore()
    async with tether.SessionManager(
        registry=registry,
        config={"fake": {"backend": FakeBackend(), "api_key": QUOTED}},
        store=store,
        health_checks=False,
        environ={},
    ) as manager:
        with pytest.raises(AuthError) as info:
            await manager.create("fake")
        [record] = await manager.list()

    assert tether.SessionState.FAILED == record.state
    assert record.error is not None
    assert "***" in record.error
    assert QUOTED not in record.error
    assert QUOTED not in str(info.value)


@pytest.mark.parametrize(
    "config_class",
    [
        "tether.abc:ProviderConfig",
        "tether_sandbox:SandboxConfig",
        "tether_sipher:SipherConfig",
        "tether_relay:RelayConfig",
        "tether_morpheus:MorpheusConfig",
    ],
)
def test_a_password_in_a_config_url_stays_out_of_its_repr(config_class: str) -> None:
    """
    A config whose ``base_url`` carries a password shows it masked in its
    repr, while the URL itself (what the client gets) is unchanged.
    """
    import importlib  # noqa: PLC0415

    module, name = config_class.split(":")
    cls = getattr(importlib.import_module(module), name)
    url = "https://user:hunter2-password@service.test/api"
    required = {"api_key": KEY, "api_token": KEY}
    fields = {f.name for f in __import__("attrs").fields(cls)}
    config = cls(base_url=url, **{k: v for k, v in required.items() if k in fields})

    assert "hunter2-password" not in repr(config)
    assert "user:***@service.test" in repr(config)
    assert url == config.base_url
