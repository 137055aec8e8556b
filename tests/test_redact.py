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
