"""
Errors: secrets in errors.
"""

from tether.exceptions import AuthError, ProviderError


error = AuthError(
    "sandbox answered 401 to create",
    provider="sandbox",
    operation="create",
    status_code=401,
    body={"detail": "bad key", "api_key": "instavm_sk_live_123"},
)
assert error.body == {"detail": "bad key", "api_key": "***"}
assert str(error) == (
    "sandbox answered 401 to create (provider=sandbox, operation=create, status=401)"
)
assert isinstance(error, ProviderError)
assert not error.retryable
