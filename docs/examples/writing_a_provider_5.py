"""
Writing a provider: errors.
"""

import anyio
import httpx
from writing_a_provider_1 import BoxConfig, BoxProvider

from tether.exceptions import AuthError, ConflictError, ProviderError


class StrictBoxProvider(BoxProvider):
    def error_from_response(
        self,
        response: httpx.Response,
        *,
        operation: str,
        session_id: str | None = None,
        message: str | None = None,
        code: str | None = None,
    ) -> ProviderError:
        # The envelope, when there is one: a proxy's 502 is an HTML page.
        try:
            envelope = response.json()
        except ValueError:
            envelope = None
        error = envelope.get("error", "") if isinstance(envelope, dict) else ""
        text = f"box answered {response.status_code} to {operation}: {error}"
        if response.status_code == 403 and "quota" in error:
            return ConflictError(
                text,
                provider=self.name,
                operation=operation,
                session_id=session_id,
                status_code=403,
                code="quota",
            )
        return super().error_from_response(
            response, operation=operation, session_id=session_id, message=text
        )


async def main() -> None:
    provider = StrictBoxProvider(
        BoxConfig(api_key="k"), client=httpx.AsyncClient(), name="box"
    )
    quota = httpx.Response(403, json={"error": "quota exceeded"})
    denied = httpx.Response(403, json={"error": "key revoked"})
    assert isinstance(
        provider.error_from_response(quota, operation="create"), ConflictError
    )
    error = provider.error_from_response(denied, operation="create")
    assert isinstance(error, AuthError)
    assert str(error) == (
        "box answered 403 to create: key revoked "
        "(provider=box, operation=create, status=403)"
    )
    proxy = httpx.Response(502, text="<html>Bad Gateway</html>")
    assert provider.error_from_response(proxy, operation="ping").status_code == 502
    await provider.client.aclose()


if __name__ == "__main__":
    anyio.run(main)
