"""Token endpoint calls and error explanations shared by the PKCE and device flows.

Kept free of Airflow imports so `constantcontact-auth` starts fast and runs where Airflow is not
configured (a laptop obtaining a token for a remote deployment).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import requests

from airflow_provider_constantcontact.constants import DEFAULT_OAUTH_BASE_URL, REQUIRED_SCOPES

#: The ``--scopes`` default: exactly the scopes the provider needs, space separated as OAuth wants.
DEFAULT_SCOPES = " ".join(REQUIRED_SCOPES)
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"

# Exit codes: documented in docs/connection-setup.md, relied on by scripts.
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_DENIED = 3
EXIT_INVALID_CLIENT = 4
EXIT_EXPIRED = 5
EXIT_NO_REFRESH_TOKEN = 6
EXIT_PORT_IN_USE = 7

#: Attempts of one token request when the endpoint answers 429 (it allows about 1 request/s).
RATE_LIMIT_ATTEMPTS = 5


class AuthCliError(Exception):
    """A failure to report to the person in one clear message, with the process exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class OAuthEndpointError(Exception):
    """An OAuth endpoint answered with an error (``error`` / ``error_description``)."""

    def __init__(self, url: str, status: int, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}" if description else error)
        self.url = url
        self.status = status
        self.error = error
        self.description = description


def oauth_urls(
    base_url: str | None,
    *,
    auth_url: str | None = None,
    token_url: str | None = None,
    device_auth_url: str | None = None,
) -> dict[str, str]:
    """The authorize, token and device endpoints: explicit URLs win over ``base_url``'s defaults."""
    base = (base_url or DEFAULT_OAUTH_BASE_URL).rstrip("/")
    return {
        "auth_url": auth_url or f"{base}/authorize",
        "token_url": token_url or f"{base}/token",
        "device_auth_url": device_auth_url or f"{base}/device/authorize",
    }


def _retry_delay(response: requests.Response) -> float:
    """Seconds to wait after a 429: Retry-After or X-Rate-Limit-Reset (epoch) when sent, else 1."""
    for header, is_epoch in (("Retry-After", False), ("X-Rate-Limit-Reset", True)):
        value = response.headers.get(header)
        try:
            seconds = float(value) - (time.time() if is_epoch else 0.0) if value else None
        except ValueError:
            seconds = None
        if seconds is not None:
            return min(max(seconds, 0.5), 10.0)
    return 1.0


def _error_of(url: str, response: requests.Response) -> OAuthEndpointError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("error"):
        return OAuthEndpointError(
            url, response.status_code, str(body["error"]), str(body.get("error_description") or "")
        )
    if isinstance(body, dict) and body.get("error_key"):  # the API's own error shape
        return OAuthEndpointError(
            url, response.status_code, str(body["error_key"]), str(body.get("error_message") or "")
        )
    return OAuthEndpointError(
        url, response.status_code, f"http_{response.status_code}", response.reason or ""
    )


class OAuthClient:
    """Form-encoded POSTs to the OAuth endpoints with HTTP Basic client authentication.

    Without a client secret (a public client: Constant Contact's PKCE-flow and device-flow
    applications have none) the ``client_id`` goes in the form instead.
    """

    def __init__(
        self,
        client_id: str,
        client_secret: str | None,
        *,
        timeout: float = 30.0,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client_id = client_id
        self._auth = (client_id, client_secret) if client_secret else None
        self.timeout = timeout
        self.session = session or requests.Session()
        self._sleep = sleep

    def post(self, url: str, data: Mapping[str, str]) -> dict[str, Any]:
        """POST ``data``; the JSON answer, or OAuthEndpointError. Retries 429s a few times."""
        form = dict(data) if self._auth else {**data, "client_id": self.client_id}
        for attempt in range(1, RATE_LIMIT_ATTEMPTS + 1):
            try:
                response = self.session.post(
                    url,
                    data=form,
                    auth=self._auth,
                    headers={"Accept": "application/json"},
                    timeout=self.timeout,
                )
            except requests.RequestException as exc:
                raise AuthCliError(f"Cannot reach {url}: {type(exc).__name__}. Check the URL.") from None
            if response.status_code == 429 and attempt < RATE_LIMIT_ATTEMPTS:
                self._sleep(_retry_delay(response))
                continue
            if not response.ok:
                raise _error_of(url, response)
            try:
                body = response.json()
            except ValueError:
                body = None
            if not isinstance(body, dict):
                raise AuthCliError(
                    f"{url} answered HTTP {response.status_code} with no JSON object: is it an OAuth2 "
                    "endpoint of Constant Contact?"
                )
            return body
        raise AssertionError("unreachable")  # the last attempt returns or raises


def explain(exc: OAuthEndpointError, *, step: str) -> AuthCliError:
    """Turn an endpoint error into a message that says what to do, with a specific exit code."""
    detail = f" ({exc.description})" if exc.description else ""
    if exc.error == "invalid_client":
        return AuthCliError(
            f"{step} failed: Constant Contact rejected the client ID or client secret (invalid_client). "
            "Check the API key and client secret of your application in Constant Contact's developer "
            "portal (a regenerated secret replaces the old one).",
            EXIT_INVALID_CLIENT,
        )
    if exc.error == "access_denied":
        return AuthCliError(
            f"{step} failed: consent was denied (access_denied){detail}. Run the command again and "
            "choose Allow, signed in as a user of the Constant Contact account to connect.",
            EXIT_DENIED,
        )
    if exc.error == "expired_token":
        return AuthCliError(
            f"{step} failed: the device code expired before it was approved (expired_token). Run the "
            "command again and approve the code within the time shown.",
            EXIT_EXPIRED,
        )
    if exc.error == "invalid_grant":
        return AuthCliError(
            f"{step} failed: the authorization grant was refused (invalid_grant){detail}. A code can be "
            "used once and only for a few minutes, with the same redirect URI: run the command again.",
        )
    if exc.error == "invalid_scope":
        return AuthCliError(f"{step} failed: a requested scope is not valid (invalid_scope){detail}.")
    return AuthCliError(f"{step} failed: {exc.url} answered HTTP {exc.status}: {exc.error}{detail}.")


def require_refresh_token(tokens: Mapping[str, Any]) -> str:
    """The refresh token of a token response; a clear error when offline_access was not granted."""
    refresh_token = tokens.get("refresh_token")
    if not refresh_token:
        granted = tokens.get("scope") or "not stated"
        raise AuthCliError(
            "Constant Contact returned no refresh token: the consent did not include the offline_access "
            f"scope (granted: {granted}). Request it (the default --scopes include it) and consent again.",
            EXIT_NO_REFRESH_TOKEN,
        )
    return str(refresh_token)
