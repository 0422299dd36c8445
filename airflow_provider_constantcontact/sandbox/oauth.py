"""The emulated OAuth2 authorization server: refresh, authorization code + PKCE and device grants.

Callers hold the sandbox lock around every method.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from airflow_provider_constantcontact.sandbox.constants import KNOWN_SCOPES
from airflow_provider_constantcontact.sandbox.errors import oauth_error, oauth_too_many_requests, unauthorized
from airflow_provider_constantcontact.sandbox.limits import TokenBucket

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
CODE_TTL = 300
_USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
_SIGNING_KEY = secrets.token_bytes(32)


def b64url(data: bytes) -> str:
    """Unpadded base64url, as JWTs and PKCE use it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge for ``verifier``."""
    return b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def make_jwt(claims: dict[str, Any]) -> str:
    """A JWT-shaped token (header.payload.signature); the signature is an HMAC nobody verifies."""
    header = b64url(json.dumps({"kid": "sandbox", "alg": "RS256"}, separators=(",", ":")).encode())
    payload = b64url(json.dumps(claims, separators=(",", ":")).encode())
    signature = b64url(hmac.new(_SIGNING_KEY, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    return f"{header}.{payload}.{signature}"


@dataclass
class AccessGrant:
    """What an access token stands for."""

    client_id: str
    scopes: tuple[str, ...]
    expires_at: float


@dataclass
class RefreshGrant:
    """A refresh token; ``family`` links the tokens of one consent so rotation can retire old ones."""

    client_id: str
    scopes: tuple[str, ...]
    family: str
    public: bool
    active: bool = True


@dataclass
class CodeGrant:
    """An authorization code waiting to be exchanged."""

    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    challenge: str | None
    expires_at: float


@dataclass
class DeviceGrant:
    """A device authorization waiting for the user (``status``: pending, approved, denied, used)."""

    client_id: str
    user_code: str
    scopes: tuple[str, ...]
    expires_at: float
    status: str = "pending"
    last_poll: float | None = None


def _parse_scopes(raw: str | None) -> tuple[str, ...]:
    return tuple(dict.fromkeys((raw or "").split()))


class OAuthServer:
    """Issues and checks tokens for one registered client."""

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        scopes: tuple[str, ...],
        access_token_ttl: float,
        rotating_refresh_tokens: bool,
        token_rate_limit: float,
        device_code_ttl: float,
        device_poll_interval: int,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.access_token_ttl = access_token_ttl
        self.rotating_refresh_tokens = rotating_refresh_tokens
        self.device_code_ttl = device_code_ttl
        self.device_poll_interval = device_poll_interval
        self.token_bucket = TokenBucket(token_rate_limit)
        self.issuer = ""
        self.base_url = ""
        self.access_tokens: dict[str, AccessGrant] = {}
        self.refresh_tokens: dict[str, RefreshGrant] = {}
        self._newest_in_family: dict[str, str] = {}
        self._codes: dict[str, CodeGrant] = {}
        self._devices: dict[str, DeviceGrant] = {}
        self._user_codes: dict[str, str] = {}
        self._deny_next_consent = False
        self._add_refresh_token(refresh_token, RefreshGrant(client_id, scopes, "default", public=False))

    # -- inspection and controls -------------------------------------------------------------

    @property
    def current_refresh_token(self) -> str:
        """The valid refresh token of the seeded consent (the newest one after rotations)."""
        return self._newest_in_family["default"]

    def expire_access_tokens(self) -> None:
        """Make every access token issued so far expired."""
        now = time.time()
        for grant in self.access_tokens.values():
            grant.expires_at = min(grant.expires_at, now)

    def revoke_refresh_token(self, token: str | None = None) -> None:
        """Revoke ``token`` (default: the current one of the seeded consent)."""
        grant = self.refresh_tokens.get(token or self.current_refresh_token)
        if grant is None:
            raise KeyError("unknown refresh token")
        grant.active = False

    def deny_next_consent(self) -> None:
        """The next consent (authorize redirect or device verification) is denied by the user."""
        self._deny_next_consent = True

    def approve_device(self, user_code: str) -> None:
        """The user approves the device authorization showing ``user_code``."""
        self._pending_device(user_code).status = "approved"

    def deny_device(self, user_code: str) -> None:
        """The user denies the device authorization showing ``user_code``."""
        self._pending_device(user_code).status = "denied"

    def _pending_device(self, user_code: str) -> DeviceGrant:
        """The still-pending device authorization showing ``user_code`` (KeyError otherwise)."""
        device_code = self._user_codes.get(user_code.strip().upper())
        grant = self._devices.get(device_code or "")
        if grant is None or grant.status != "pending" or grant.expires_at <= time.time():
            raise KeyError("unknown, expired or already answered user code")
        return grant

    # -- API authentication ------------------------------------------------------------------

    def authenticate(self, authorization: str | None) -> AccessGrant:
        """The grant behind a ``Bearer`` header; 401 when missing, unknown or expired."""
        if not authorization or not authorization.startswith("Bearer "):
            raise unauthorized()
        grant = self.access_tokens.get(authorization[7:].strip())
        if grant is None or grant.expires_at <= time.time():
            raise unauthorized()
        return grant

    # -- endpoints ---------------------------------------------------------------------------

    def authorize(self, query: dict[str, str]) -> str:
        """Auto-approve a consent; return the redirect location carrying a code or an error."""
        client_id = query.get("client_id", "")
        redirect_uri = query.get("redirect_uri", "")
        if client_id != self.client_id:
            raise oauth_error(400, "invalid_client", "The client_id is not registered.")
        if not redirect_uri or not urlsplit(redirect_uri).scheme:
            raise oauth_error(400, "invalid_request", "The 'redirect_uri' parameter is missing or invalid.")
        state = query.get("state")

        def redirect(**params: str) -> str:
            if state is not None:
                params["state"] = state
            parts = urlsplit(redirect_uri)
            joined = f"{parts.query}&{urlencode(params)}" if parts.query else urlencode(params)
            return urlunsplit(parts._replace(query=joined))

        if query.get("response_type") != "code":
            return redirect(error="unsupported_response_type", error_description="Use response_type=code.")
        scopes = _parse_scopes(query.get("scope"))
        if not scopes or not set(scopes) <= KNOWN_SCOPES:
            return redirect(error="invalid_scope", error_description="One or more scopes are not valid.")
        challenge = query.get("code_challenge")
        if challenge is not None and query.get("code_challenge_method") != "S256":
            return redirect(error="invalid_request", error_description="code_challenge_method must be S256.")
        if self._deny_next_consent:
            self._deny_next_consent = False
            return redirect(error="access_denied", error_description="The resource owner denied the request.")
        code = secrets.token_urlsafe(24)
        self._codes[code] = CodeGrant(client_id, redirect_uri, scopes, challenge, time.time() + CODE_TTL)
        return redirect(code=code)

    def device_authorize(self, authorization: str | None, form: dict[str, str]) -> dict[str, Any]:
        """Start a device authorization (RFC 8628 section 3.1)."""
        client_id, _public = self._client(authorization, form, allow_public=True)
        scopes = _parse_scopes(form.get("scope"))
        if not scopes or not set(scopes) <= KNOWN_SCOPES:
            raise oauth_error(400, "invalid_scope", "One or more scopes are not valid.")
        device_code = secrets.token_urlsafe(32)
        user_code = "-".join("".join(secrets.choice(_USER_CODE_ALPHABET) for _ in range(4)) for _ in range(2))
        self._devices[device_code] = DeviceGrant(
            client_id, user_code, scopes, time.time() + self.device_code_ttl
        )
        self._user_codes[user_code] = device_code
        verification_uri = f"{self.base_url}/activate"
        return {
            "device_code": device_code,
            "user_code": user_code,
            "verification_uri": verification_uri,
            "verification_uri_complete": f"{verification_uri}?{urlencode({'user_code': user_code})}",
            "expires_in": int(self.device_code_ttl),
            "interval": self.device_poll_interval,
        }

    def verify_device_page(self, user_code: str) -> bool:
        """The user opens the verification page: approve (or deny once after deny_next_consent)."""
        grant = self._pending_device(user_code)
        if self._deny_next_consent:
            self._deny_next_consent = False
            grant.status = "denied"
            return False
        grant.status = "approved"
        return True

    def token(self, authorization: str | None, form: dict[str, str]) -> dict[str, Any]:
        """The token endpoint: refresh_token, authorization_code and device_code grants."""
        if not self.token_bucket.allow("token"):
            raise oauth_too_many_requests(int(time.time()) + 1)
        grant_type = form.get("grant_type")
        if grant_type == "refresh_token":
            return self._refresh_grant(authorization, form)
        if grant_type == "authorization_code":
            return self._code_grant(authorization, form)
        if grant_type == DEVICE_GRANT:
            return self._device_grant(authorization, form)
        raise oauth_error(400, "unsupported_grant_type", "The grant_type is not supported.")

    # -- grants ------------------------------------------------------------------------------

    def _client(
        self, authorization: str | None, form: dict[str, str], *, allow_public: bool
    ) -> tuple[str, bool]:
        """Authenticate the client: Basic header, client_secret in the form, or public client_id."""
        invalid = oauth_error(
            401,
            "invalid_client",
            "Client authentication failed. Either the client or the client credentials are invalid.",
            {"WWW-Authenticate": 'Basic realm="sandbox"'},
        )
        if authorization and authorization.startswith("Basic "):
            try:
                client_id, _, secret = base64.b64decode(authorization[6:].strip()).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise invalid from None
        elif "client_secret" in form:
            client_id, secret = form.get("client_id", ""), form["client_secret"]
        elif allow_public and form.get("client_id") == self.client_id:
            return self.client_id, True
        else:
            raise invalid
        if not (
            hmac.compare_digest(client_id, self.client_id) and hmac.compare_digest(secret, self.client_secret)
        ):
            raise invalid
        return client_id, False

    def _refresh_grant(self, authorization: str | None, form: dict[str, str]) -> dict[str, Any]:
        token = form.get("refresh_token", "")
        grant = self.refresh_tokens.get(token)
        client_id, _public = self._client(authorization, form, allow_public=bool(grant and grant.public))
        if grant is None or not grant.active or grant.client_id != client_id:
            raise oauth_error(400, "invalid_grant", "The refresh token is invalid or expired.")
        if self.rotating_refresh_tokens:
            for other in self.refresh_tokens.values():
                if other.family == grant.family:
                    other.active = False
            new_token = secrets.token_urlsafe(32)
            self._add_refresh_token(
                new_token, RefreshGrant(client_id, grant.scopes, grant.family, grant.public)
            )
        else:
            new_token = token
        return self._issue(client_id, grant.scopes, refresh_token=new_token)

    def _code_grant(self, authorization: str | None, form: dict[str, str]) -> dict[str, Any]:
        code = self._codes.pop(form.get("code", ""), None)
        client_id, public = self._client(authorization, form, allow_public=bool(code and code.challenge))
        if code is None or code.expires_at <= time.time() or code.client_id != client_id:
            raise oauth_error(400, "invalid_grant", "The authorization code is invalid or has expired.")
        if form.get("redirect_uri") != code.redirect_uri:
            raise oauth_error(
                400,
                "invalid_grant",
                "The 'redirect_uri' does not match the redirection URI used in the authorization request.",
            )
        if code.challenge is not None:
            verifier = form.get("code_verifier", "")
            if not verifier or not hmac.compare_digest(pkce_challenge(verifier), code.challenge):
                raise oauth_error(400, "invalid_grant", "PKCE verification failed.")
        return self._issue_with_new_family(client_id, code.scopes, public)

    def _device_grant(self, authorization: str | None, form: dict[str, str]) -> dict[str, Any]:
        client_id, public = self._client(authorization, form, allow_public=True)
        grant = self._devices.get(form.get("device_code", ""))
        if grant is None or grant.client_id != client_id or grant.status == "used":
            raise oauth_error(400, "invalid_grant", "The device code is invalid.")
        now = time.time()
        if grant.expires_at <= now:
            raise oauth_error(400, "expired_token", "The device code has expired.")
        if grant.status == "denied":
            raise oauth_error(400, "access_denied", "The resource owner denied the request.")
        if grant.status == "pending":
            too_fast = grant.last_poll is not None and now - grant.last_poll < self.device_poll_interval
            grant.last_poll = now
            if too_fast:
                raise oauth_error(400, "slow_down", "Polling too fast: wait the interval between polls.")
            raise oauth_error(400, "authorization_pending", "The user has not yet approved the device.")
        grant.status = "used"
        return self._issue_with_new_family(client_id, grant.scopes, public)

    # -- issuing -----------------------------------------------------------------------------

    def _add_refresh_token(self, token: str, grant: RefreshGrant) -> None:
        self.refresh_tokens[token] = grant
        self._newest_in_family[grant.family] = token

    def _issue_with_new_family(self, client_id: str, scopes: tuple[str, ...], public: bool) -> dict[str, Any]:
        refresh_token = None
        if "offline_access" in scopes:
            refresh_token = secrets.token_urlsafe(32)
            family = secrets.token_hex(8)
            self._add_refresh_token(refresh_token, RefreshGrant(client_id, scopes, family, public))
        return self._issue(client_id, scopes, refresh_token=refresh_token)

    def _issue(self, client_id: str, scopes: tuple[str, ...], *, refresh_token: str | None) -> dict[str, Any]:
        now = int(time.time())
        exp = now + int(self.access_token_ttl)
        access_token = make_jwt(
            {
                "ver": 1,
                "jti": "AT." + secrets.token_urlsafe(16),
                "iss": self.issuer,
                "aud": "https://api.cc.email",
                "iat": now,
                "exp": exp,
                "cid": client_id,
                "uid": "sandbox-user",
                "scp": list(scopes),
                "sub": "sandbox-user",
                "platform_user_id": "sandbox-user",
            }
        )
        self.access_tokens[access_token] = AccessGrant(client_id, scopes, now + self.access_token_ttl)
        id_token = make_jwt(
            {
                "ver": 1,
                "iss": self.issuer,
                "aud": client_id,
                "iat": now,
                "exp": now + 3600,
                "sub": "sandbox-user",
            }
        )
        body = {
            "token_type": "Bearer",
            "expires_in": int(self.access_token_ttl),
            "access_token": access_token,
            "scope": " ".join(scopes),
            "id_token": id_token,
        }
        if refresh_token is not None:
            body["refresh_token"] = refresh_token
        return body
