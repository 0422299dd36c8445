"""Shared helpers for the hook tests: fake JWTs, connections and a fast-retrying hook."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

from airflow.sdk import Connection

from airflow_provider_constantcontact.hooks._token_store import TokenStore
from airflow_provider_constantcontact.hooks.constantcontact import ConstantContactHook

API = "https://api.example.test/v3"
TOKEN_URL = "https://auth.example.test/oauth2/default/v1/token"
CLIENT_ID = "client-id-abc123"
CLIENT_SECRET = "client-secret-SHOULD-NEVER-LEAK"
REFRESH_TOKEN = "refresh-token-0-SHOULD-NEVER-LEAK"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(exp: float, marker: str = "x", scope: str = "contact_data offline_access") -> str:
    """An unsigned JWT-shaped token with an ``exp`` claim (the hook never verifies signatures)."""
    header = b64url(json.dumps({"alg": "none"}).encode())
    payload = b64url(json.dumps({"exp": int(exp), "jti": marker, "scp": scope.split()}).encode())
    return f"{header}.{payload}.{b64url(marker.encode() * 4)}"


def token_body(
    access_token: str, refresh_token: str = REFRESH_TOKEN, scope: str = "contact_data offline_access"
) -> dict[str, Any]:
    return {
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": 86400,
        "scope": scope,
        "refresh_token": refresh_token,
    }


def make_connection(
    conn_id: str = "cc_test", *, client_secret: str = CLIENT_SECRET, **extra: Any
) -> Connection:
    extras = {
        "refresh_token": REFRESH_TOKEN,
        "api_base_url": API,
        "token_url": TOKEN_URL,
        "max_requests_per_second": 0,
        **extra,
    }
    return Connection(
        conn_id=conn_id,
        conn_type="constantcontact",
        login=CLIENT_ID,
        password=client_secret,
        extra=json.dumps(extras),
    )


def fast_hook(
    store: TokenStore | None = None,
    conn_id: str = "cc_test",
    max_attempts: int = 3,
    client_secret: str = CLIENT_SECRET,
    **extra: Any,
) -> ConstantContactHook:
    """A hook whose retries back off for milliseconds, not seconds."""
    return ConstantContactHook(
        conn_id,
        connection=make_connection(conn_id, client_secret=client_secret, **extra),
        token_store=store,
        max_attempts=max_attempts,
        backoff_initial=0.001,
        backoff_max=0.005,
        backoff_jitter=0.0,
    )


def future(seconds: float = 86400) -> float:
    return time.time() + seconds


def unique_secret() -> str:
    """A secret no earlier test has registered with the process-global secrets masker.

    Random hex only: the masker also hides registered secrets inside longer strings, so a
    readable prefix such as ``refresh-token-`` could already be masked by another test's token.
    """
    return uuid.uuid4().hex
