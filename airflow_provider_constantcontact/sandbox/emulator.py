"""``ConstantContactSandbox``: the emulator in-process: life cycle, addresses, credentials, settings."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from typing import Any

from airflow_provider_constantcontact.sandbox.constants import (
    DEFAULT_ACCESS_TOKEN_TTL,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_DAILY_QUOTA,
    DEFAULT_DEVICE_CODE_TTL,
    DEFAULT_DEVICE_POLL_INTERVAL,
    DEFAULT_HOST,
    DEFAULT_RATE_LIMIT,
    DEFAULT_REFRESH_TOKEN,
    DEFAULT_SCOPES,
    DEFAULT_TOKEN_RATE_LIMIT,
    OAUTH_PREFIX,
)
from airflow_provider_constantcontact.sandbox.controls import SandboxControls
from airflow_provider_constantcontact.sandbox.oauth import OAuthServer
from airflow_provider_constantcontact.sandbox.server import (
    App,
    SandboxHTTPServer,
)
from airflow_provider_constantcontact.sandbox.state import SandboxState


class ConstantContactSandbox(SandboxControls):
    """A local, in-memory emulator of the Constant Contact V3 API and its OAuth2 server.

    Use it as a context manager (``with ConstantContactSandbox() as sandbox:``) or call
    ``start()``/``stop()``. ``port=0`` picks a free port. Seeding, inspection and faults are
    the methods of ``SandboxControls`` (controls.py). ``membership_changes_move_updated_at``,
    ``unsubscribe_removes_memberships``, ``unsubscribe_moves_updated_at`` and
    ``date_filters_inclusive`` and ``list_name_reading`` choose between the readings of what the API leaves
    undocumented (docs/sandbox.md, docs/api-semantics.md).
    """

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = 0,
        *,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        refresh_token: str = DEFAULT_REFRESH_TOKEN,
        scopes: Iterable[str] = DEFAULT_SCOPES,
        rotating_refresh_tokens: bool = False,
        access_token_ttl: float = DEFAULT_ACCESS_TOKEN_TTL,
        rate_limit: float = DEFAULT_RATE_LIMIT,
        daily_quota: int = DEFAULT_DAILY_QUOTA,
        token_rate_limit: float = DEFAULT_TOKEN_RATE_LIMIT,
        processing_rate: float | None = None,
        lists: Iterable[str] = (),
        custom_fields: Iterable[str] = (),
        device_code_ttl: float = DEFAULT_DEVICE_CODE_TTL,
        device_poll_interval: int = DEFAULT_DEVICE_POLL_INTERVAL,
        list_name_reading: str = "casefold",
        membership_changes_move_updated_at: bool = True,
        unsubscribe_removes_memberships: bool = False,
        unsubscribe_moves_updated_at: bool = True,
        date_filters_inclusive: bool = False,
        verbose: bool = False,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.lock = threading.RLock()
        self.state = SandboxState(list_name_reading)
        self.state.processing_rate = processing_rate
        # Readings of what V3 leaves undocumented (docs/api-semantics.md): each one modelled.
        self.state.membership_changes_move_updated_at = membership_changes_move_updated_at
        self.state.unsubscribe_removes_memberships = unsubscribe_removes_memberships
        self.state.unsubscribe_moves_updated_at = unsubscribe_moves_updated_at
        self.state.date_filters_inclusive = date_filters_inclusive
        self.oauth = OAuthServer(
            client_id=client_id,
            client_secret=client_secret,
            refresh_token=refresh_token,
            scopes=tuple(scopes),
            access_token_ttl=access_token_ttl,
            rotating_refresh_tokens=rotating_refresh_tokens,
            token_rate_limit=token_rate_limit,
            device_code_ttl=device_code_ttl,
            device_poll_interval=device_poll_interval,
        )
        self.app = App(
            state=self.state,
            oauth=self.oauth,
            lock=self.lock,
            rate_limit=rate_limit,
            daily_quota=daily_quota,
            verbose=verbose,
        )
        self._server: SandboxHTTPServer | None = None
        self._thread: threading.Thread | None = None
        for name in lists:
            self.create_list(name)
        for name in custom_fields:
            self.create_custom_field(name)

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> ConstantContactSandbox:
        """Bind and serve in a background thread; returns self."""
        if self._server is not None:
            raise RuntimeError("the sandbox is already running")
        self._server = SandboxHTTPServer((self.host, self._requested_port), self.app)
        base_url = self.base_url
        self.oauth.base_url = base_url
        self.oauth.issuer = f"{base_url}/oauth2/default"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="cc-sandbox", daemon=True
        )
        self._thread.start()
        self.app.applier.start()
        return self

    def stop(self) -> None:
        """Stop serving, close open connections and join every server thread (the applier too).

        Imports still queued stay queued: the next inspection applies them."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.app.applier.stop()

    def __enter__(self) -> ConstantContactSandbox:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- addresses and credentials -----------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (only once started)."""
        if self._server is None:
            raise RuntimeError("the sandbox is not running")
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def api_base_url(self) -> str:
        """Base of the API paths (``.../v3``)."""
        return f"{self.base_url}/v3"

    @property
    def token_url(self) -> str:
        """OAuth2 token endpoint."""
        return f"{self.base_url}{OAUTH_PREFIX}/token"

    @property
    def authorize_url(self) -> str:
        """OAuth2 authorize endpoint (authorization code + PKCE)."""
        return f"{self.base_url}{OAUTH_PREFIX}/authorize"

    @property
    def device_authorize_url(self) -> str:
        """OAuth2 device authorization endpoint."""
        return f"{self.base_url}{OAUTH_PREFIX}/device/authorize"

    @property
    def client_id(self) -> str:
        """The registered client id."""
        return self.oauth.client_id

    @property
    def client_secret(self) -> str:
        """The registered client secret."""
        return self.oauth.client_secret

    @property
    def refresh_token(self) -> str:
        """The currently valid seeded refresh token (the newest one after rotations)."""
        with self.lock:
            return self.oauth.current_refresh_token

    def connection_dict(self) -> dict[str, Any]:
        """An Airflow connection (JSON form) pointing at this sandbox."""
        rate = self.rate_limit
        return {
            "conn_type": "constantcontact",
            "login": self.client_id,
            "password": self.client_secret,
            "extra": {
                "refresh_token": self.refresh_token,
                "api_base_url": self.api_base_url,
                "token_url": self.token_url,
                "max_requests_per_second": int(rate) if float(rate).is_integer() else rate,
            },
        }

    def connection_json(self) -> str:
        """``connection_dict()`` as JSON, ready for ``AIRFLOW_CONN_CONSTANTCONTACT_DEFAULT``."""
        return json.dumps(self.connection_dict())

    # -- run-time settings -------------------------------------------------------------------

    @property
    def processing_rate(self) -> float | None:
        """Contacts a second import activities advance at (None: complete at the first read)."""
        return self.state.processing_rate

    @processing_rate.setter
    def processing_rate(self, rate: float | None) -> None:
        with self.lock:
            self.state.set_processing_rate(rate)

    @property
    def rate_limit(self) -> float:
        """API requests a second per client (0: off)."""
        return self.app.bucket.rate

    @rate_limit.setter
    def rate_limit(self, rate: float) -> None:
        with self.lock:
            self.app.bucket.rate = float(rate)

    @property
    def token_rate_limit(self) -> float:
        """Token endpoint requests a second (0: off)."""
        return self.oauth.token_bucket.rate

    @token_rate_limit.setter
    def token_rate_limit(self, rate: float) -> None:
        with self.lock:
            self.oauth.token_bucket.rate = float(rate)

    @property
    def daily_quota(self) -> int:
        """API requests a UTC day per client (0: off)."""
        return self.app.quota.limit

    @daily_quota.setter
    def daily_quota(self, limit: int) -> None:
        with self.lock:
            self.app.quota.limit = int(limit)

    @property
    def access_token_ttl(self) -> float:
        """Lifetime in seconds of access tokens issued from now on."""
        return self.oauth.access_token_ttl

    @access_token_ttl.setter
    def access_token_ttl(self, seconds: float) -> None:
        with self.lock:
            self.oauth.access_token_ttl = seconds

    @property
    def rotating_refresh_tokens(self) -> bool:
        """Whether each refresh returns a new refresh token and retires the earlier ones."""
        return self.oauth.rotating_refresh_tokens

    @rotating_refresh_tokens.setter
    def rotating_refresh_tokens(self, rotating: bool) -> None:
        with self.lock:
            self.oauth.rotating_refresh_tokens = rotating
