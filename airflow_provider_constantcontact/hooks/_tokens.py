"""OAuth2 access tokens for the Constant Contact hook: refresh, process cache, rotation.

:class:`TokenManager` hands out a usable access token: from this process's cache, else from
the token store (``_token_store.py``: another task may have refreshed already), else by asking
the token endpoint, and persists the new record when the refresh token rotated. After
``invalid_grant`` it re-reads the store before asking for re-authorisation.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from airflow_provider_constantcontact.exceptions import (
    ConstantContactAuthError,
    ConstantContactReauthorizationRequired,
)
from airflow_provider_constantcontact.hooks._http import (
    HttpClient,
    Pacing,
    parse_error_body,
)
from airflow_provider_constantcontact.hooks._token_store import (
    TokenRecord,
    TokenStore,
    lineage_origin,
    variable_key,
)

log = logging.getLogger(__name__)

#: Seconds to wait between re-reads of the store after ``invalid_grant``: another task that
#: rotated the token may not have written its record yet when our refresh is refused.
INVALID_GRANT_RECHECK_DELAYS: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0)
#: Token endpoint pace (requests a second) while pacing is on: it allows about one a second,
#: so keep a margin for network jitter. Refreshes are rare; the wait costs nothing in practice.
TOKEN_ENDPOINT_RATE = 0.8
#: Lifetime assumed when neither the JWT ``exp`` nor ``expires_in`` says anything.
DEFAULT_LIFETIME = 3600.0


def mask(*secrets: str | None) -> None:
    """Register secrets with Airflow's masker (task, triggerer and supervisor logs)."""
    from airflow.sdk.log import mask_secret

    for secret in secrets:
        if secret:
            mask_secret(secret)


def jwt_expiry(access_token: str) -> float | None:
    """The ``exp`` claim of a JWT access token (not verified: only used to schedule refreshes)."""
    parts = access_token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        return float(payload["exp"])
    except (ValueError, KeyError, TypeError):
        return None


# Process-wide cache and locks: hooks of one process (operator, sensor, trigger threads)
# share one access token per lineage and never refresh it concurrently.
_CACHE: dict[tuple[str, str, str], TokenRecord] = {}
_LOCKS: dict[tuple[str, str, str], threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock_for(key: tuple[str, str, str]) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.Lock())


def clear_process_cache() -> None:
    """Forget every cached access token of this process (tests, or after re-authorisation)."""
    _CACHE.clear()


class _InvalidGrant(Exception):
    """Internal: the token endpoint answered ``invalid_grant``."""

    def __init__(self, status: int, error_message: str | None) -> None:
        super().__init__(error_message)
        self.status = status
        self.error_message = error_message


class TokenManager:
    """Hands out a valid access token, refreshing (and persisting rotations) when needed.

    ``http`` is the hook's client: the manager derives its own from it (same session and retry
    policy) paced for the token endpoint, at :data:`TOKEN_ENDPOINT_RATE` when ``pacing`` is on.
    """

    def __init__(
        self,
        *,
        conn_id: str,
        client_id: str,
        client_secret: str | None,
        refresh_token: str,
        token_url: str,
        http: HttpClient,
        store: TokenStore,
        refresh_margin: float,
        pacing: bool,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.conn_id = conn_id
        self.client_id = client_id
        self._client_secret = client_secret
        self._conn_refresh_token = refresh_token
        self.token_url = token_url
        # The token endpoint has its own, slower pace (shared by every client of this URL).
        self._http = http.derive(
            pacing=Pacing.shared(f"token:{token_url}", TOKEN_ENDPOINT_RATE if pacing else 0.0)
        )
        self.store = store
        self.refresh_margin = refresh_margin
        self._clock = clock
        self.origin = lineage_origin(client_id, refresh_token)
        self._key = (token_url, client_id, self.origin)
        #: The token endpoint's ``scope`` from this manager's last refresh (for test_connection).
        self.last_scope: str | None = None
        #: Exception type of the last failed store read (None once a read succeeds).
        self._store_read_error: str | None = None
        mask(client_secret, refresh_token)

    # -- public
    def access_token(self, *, stale: str | None = None, force_refresh: bool = False) -> str:
        """A usable access token; ``stale`` is one the API just refused (401), never reused.

        ``force_refresh`` always asks the token endpoint (with the newest refresh token known),
        so the client credentials as configured are checked even when a cached token exists.
        """
        with _lock_for(self._key):
            now = self._clock()
            cached = _CACHE.get(self._key)
            reusable = not force_refresh
            if (
                reusable
                and cached
                and cached.access_token != stale
                and cached.usable(now, self.refresh_margin)
            ):
                return cached.access_token
            stored = self._load()
            if (
                reusable
                and stored
                and stored.access_token != stale
                and stored.usable(now, self.refresh_margin)
            ):
                _CACHE[self._key] = stored
                return stored.access_token
            # The newest refresh token known: the store's, else this process's own rotation.
            base = stored or cached
            had_record = stored is not None or (
                cached is not None and cached.refresh_token != self._conn_refresh_token
            )
            record = self._refresh(base.refresh_token if base else self._conn_refresh_token, had_record)
            _CACHE[self._key] = record
            return record.access_token

    def cached_record(self) -> TokenRecord | None:
        """The record this process currently uses, if any."""
        return _CACHE.get(self._key)

    # -- internals
    def _load(self) -> TokenRecord | None:
        try:
            record = self.store.load(self.client_id, self.origin)
        except Exception as exc:
            # Reading must not break long-lived tokens where no store is reachable (a plain
            # script with no metadata DB): fall back to the connection's refresh token.
            self._store_read_error = type(exc).__name__
            log.warning("Could not read the Constant Contact token store: %s", self._store_read_error)
            return None
        self._store_read_error = None
        if record:
            mask(record.refresh_token, record.access_token)
        return record

    def _refresh(self, refresh_token: str, had_record: bool) -> TokenRecord:
        tried: set[str] = set()
        while True:
            tried.add(refresh_token)
            try:
                payload = self._call_token_endpoint(refresh_token)
            except _InvalidGrant as refused:
                recovered = self._recover_after_invalid_grant(tried)
                if recovered is None:
                    raise self._reauthorization_error(refused) from None
                if recovered.usable(self._clock(), self.refresh_margin):
                    log.info("Using the access token another task obtained for connection %s", self.conn_id)
                    return recovered
                refresh_token, had_record = recovered.refresh_token, True
                continue
            return self._accept(payload, refresh_token, had_record)

    def _recover_after_invalid_grant(self, tried: set[str]) -> TokenRecord | None:
        """Re-read the store (a few times): another task may have rotated the token meanwhile."""
        for delay in INVALID_GRANT_RECHECK_DELAYS:
            if delay:
                time.sleep(delay)
            record = self._load()
            if record and record.refresh_token not in tried:
                return record
        return None

    def _reauthorization_error(self, refused: _InvalidGrant) -> ConstantContactReauthorizationRequired:
        """The failure after ``invalid_grant`` with nothing newer in the store: what to do now.

        Nothing needs deleting: a new refresh token in the connection starts a new lineage, so
        the stored record of the old one is ignored and then overwritten.
        """
        message = (
            f"The refresh token of Constant Contact connection '{self.conn_id}' was refused "
            "(invalid_grant: revoked, expired after 180 days unused, or a rotating token already used). "
            "A Constant Contact account admin must re-authorise: run `constantcontact-auth` and put the "
            "refresh token it prints into the connection's refresh_token field. Nothing needs deleting: "
            f"the old token's record in the Variable '{variable_key(self.conn_id)}' is then ignored "
            "and replaced."
        )
        if self._store_read_error:
            message += (
                f" Note: that Variable could not be read ({self._store_read_error}), so a refresh token "
                "another task rotated and stored there may have been missed: once Variables can be read "
                "again, retrying may succeed without re-authorising."
            )
        return ConstantContactReauthorizationRequired(
            message,
            status=refused.status,
            method="POST",
            path=self._token_path(),
            error_key="invalid_grant",
            error_message=refused.error_message,
        )

    def _token_path(self) -> str:
        from urllib.parse import urlsplit

        return urlsplit(self.token_url).path or "/"

    def _call_token_endpoint(self, refresh_token: str) -> dict[str, Any]:
        path = self._token_path()
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        if self._client_secret:
            credentials: dict[str, Any] = {"auth": (self.client_id, self._client_secret)}
        else:  # a public client (PKCE or device flow application) has no secret
            credentials = {}
            form["client_id"] = self.client_id
        response = self._http.send(
            "POST",
            self.token_url,
            log_path=path,
            data=form,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            **credentials,
        )
        if response.ok:
            try:
                payload = response.json()
            except ValueError:
                payload = None
            if not isinstance(payload, dict) or not payload.get("access_token"):
                raise ConstantContactAuthError(
                    f"The token endpoint {path} answered HTTP {response.status_code} without an access "
                    "token: check the connection's token_url.",
                    status=response.status_code,
                    method="POST",
                    path=path,
                )
            return payload
        error_key, error_message = parse_error_body(response)
        if error_key == "invalid_grant":
            raise _InvalidGrant(response.status_code, error_message)
        if error_key == "invalid_client":
            raise ConstantContactAuthError(
                f"The token endpoint {path} rejected the client credentials (invalid_client): check the "
                "connection's Client ID (API key) and Client secret.",
                status=response.status_code,
                method="POST",
                path=path,
                error_key=error_key,
                error_message=error_message,
            )
        detail = ": ".join(p for p in (error_key, error_message) if p) or response.reason or "no detail"
        raise ConstantContactAuthError(
            f"Refreshing the access token failed: the token endpoint {path} answered HTTP "
            f"{response.status_code} ({detail}); check the connection's token_url.",
            status=response.status_code,
            method="POST",
            path=path,
            error_key=error_key,
            error_message=error_message,
        )

    def _accept(self, payload: dict[str, Any], used_refresh_token: str, had_record: bool) -> TokenRecord:
        """Turn a token response into a record; persist it first when the refresh token rotated."""
        now = self._clock()
        access_token = str(payload["access_token"])
        new_refresh_token = str(payload.get("refresh_token") or used_refresh_token)
        mask(access_token, new_refresh_token)
        expires_at = jwt_expiry(access_token)
        if expires_at is None:
            try:
                expires_in = float(payload.get("expires_in") or DEFAULT_LIFETIME)
            except (TypeError, ValueError):
                expires_in = DEFAULT_LIFETIME
            # Unconfirmed whether expires_in is a duration or an epoch time: accept both.
            expires_at = expires_in if expires_in > 1e9 else now + expires_in
        record = TokenRecord(
            client_id=self.client_id,
            origin=self.origin,
            refresh_token=new_refresh_token,
            access_token=access_token,
            expires_at=expires_at,
            obtained_at=now,
            scope=payload.get("scope"),
        )
        self.last_scope = record.scope
        rotated = new_refresh_token != used_refresh_token
        if rotated or had_record:
            try:
                self.store.save(record)
            except Exception as exc:
                raise ConstantContactAuthError(
                    f"Constant Contact rotated the refresh token of connection '{self.conn_id}' but the new "
                    f"one could not be saved to the Variable '{variable_key(self.conn_id)}' "
                    f"({type(exc).__name__}). The previous refresh token is no longer valid: re-authorise "
                    "with `constantcontact-auth` once the Variable store works again.",
                    method="POST",
                    path=self._token_path(),
                ) from None
        log.info(
            "Refreshed the Constant Contact access token of connection %s (valid %d min%s)",
            self.conn_id,
            max(0, int((expires_at - now) // 60)),
            "; rotated refresh token saved" if rotated else "",
        )
        return record
