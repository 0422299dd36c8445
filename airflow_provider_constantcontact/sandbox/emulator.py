"""``ConstantContactSandbox``: start the emulator in-process and control it from tests."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from operator import itemgetter
from typing import Any

from airflow_provider_constantcontact.sandbox.account import public_props
from airflow_provider_constantcontact.sandbox.activities import ACTIVITY_KINDS, IMPORT
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
    FAILED_ACTIVITY_STATES,
    OAUTH_PREFIX,
)
from airflow_provider_constantcontact.sandbox.oauth import OAuthServer
from airflow_provider_constantcontact.sandbox.server import (
    App,
    RequestLogEntry,
    SandboxHTTPServer,
)
from airflow_provider_constantcontact.sandbox.state import SandboxState


class ConstantContactSandbox:
    """A local, in-memory emulator of the Constant Contact V3 API and its OAuth2 server.

    Use it as a context manager (``with ConstantContactSandbox() as sandbox:``) or call
    ``start()``/``stop()``. ``port=0`` picks a free port.
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
        verbose: bool = False,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.lock = threading.RLock()
        self.state = SandboxState()
        self.state.processing_rate = processing_rate
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

    # -- seeding and inspection --------------------------------------------------------------

    def create_list(self, name: str, description: str | None = None, favorite: bool = False) -> str:
        """Create a contact list; returns its id."""
        with self.lock:
            return self.state.create_list(name, description, favorite)["list_id"]

    def create_custom_field(self, name: str, label: str | None = None, type: str = "string") -> str:
        """Create a custom field (imported as ``cf:<name>``); returns its id."""
        with self.lock:
            return self.state.create_custom_field(name, label, type)["custom_field_id"]

    @property
    def list_ids(self) -> dict[str, str]:
        """List name -> list id, for every list."""
        with self.lock:
            return {item["name"]: list_id for list_id, item in self.state.lists.items()}

    @property
    def custom_field_ids(self) -> dict[str, str]:
        """Custom field name -> custom field id."""
        with self.lock:
            return dict(self.state.custom_field_names)

    def list_members(self, list_id: str) -> dict[str, dict[str, Any]]:
        """Members of a list: email -> stored properties (``first_name``, ..., ``cf:<name>``)."""
        with self.lock:
            self.state.drain()
            members = self.state.memberships.get(list_id)
            if members is None:
                raise KeyError(f"unknown list id {list_id}")
            out = {}
            for key in members:
                props = public_props(self.state.contacts[key])
                out[props.pop("email", None) or key] = props
            return out

    def add_list_members(self, list_id: str, emails: Iterable[str], **fields: Any) -> list[str]:
        """Add many members to a list at once, without HTTP, import or activity (seeding).

        Unknown addresses become contacts holding ``fields`` (import properties such as
        ``first_name="Ann"`` or ``**{"cf:loyalty_tier": "gold"}``), known ones get ``fields``.
        Every address is added, unsubscribed or not; deleted ones are revived. Returns the
        contact ids, in the order of ``emails``. A million new addresses take a few seconds.
        KeyError for an unknown list, ValueError for an invalid address or property.
        """
        with self.lock:
            return self.state.add_list_members(list_id, emails, fields)

    def list_member_emails(self, list_id: str) -> set[str]:
        """The email addresses of a list's members, as stored (KeyError for an unknown list)."""
        with self.lock:
            self.state.drain()
            members = self.state.memberships.get(list_id)
            if members is None:
                raise KeyError(f"unknown list id {list_id}")
            state = self.state
            # In index order: records are then read in the order they were made (cache friendly).
            keys = list(map(state.contact_keys.__getitem__, state.member_order[list_id]))
            try:
                return set(map(itemgetter("email"), map(state.contacts.__getitem__, keys)))
            except KeyError:  # a contact imported by sms_number only
                return {state.contacts[key].get("email") or key for key in keys}

    def contact_id(self, email: str) -> str:
        """The contact id of a stored email address (KeyError when unknown)."""
        with self.lock:
            return self.state.contact_id(self.state.contact_record(email))

    @property
    def request_log(self) -> list[RequestLogEntry]:
        """The newest 100,000 requests, oldest first (method, path, query, status, body_bytes, ...)."""
        with self.lock:
            return list(self.app.request_log)

    def clear_request_log(self) -> None:
        """Forget the requests logged so far."""
        with self.lock:
            self.app.request_log.clear()

    def get_activity(self, activity_id: str) -> dict[str, Any]:
        """An activity as ``GET /v3/activities/{id}`` returns it (brought up to date)."""
        with self.lock:
            return self.state.get_activity(activity_id).to_json()

    # -- faults ------------------------------------------------------------------------------

    def fail_next(
        self, count: int = 1, status: int = 500, path_prefix: str | None = None, *, after: int = 0
    ) -> None:
        """The next ``count`` requests under ``path_prefix`` (default ``/v3``) answer ``status``
        without being processed; ``after`` lets that many matching requests through first
        (``after=2``: the third one fails)."""
        with self.lock:
            self.app.faults.add(count, status, path_prefix, after)

    def drop_next(self, count: int = 1, path_prefix: str | None = None, *, after: int = 0) -> None:
        """The next ``count`` requests under ``path_prefix`` (default ``/v3``) get no response
        (and are not processed), once ``after`` matching requests have gone through."""
        with self.lock:
            self.app.faults.add(count, None, path_prefix, after)

    def exhaust_daily_quota(self) -> None:
        """Further API requests get 429 ``quota_exceeded`` until the next UTC day."""
        with self.lock:
            self.app.quota.exhaust()

    def expire_access_tokens(self) -> None:
        """Every access token issued so far is expired from now on (requests get 401)."""
        with self.lock:
            self.oauth.expire_access_tokens()

    def revoke_refresh_token(self, token: str | None = None) -> None:
        """Revoke a refresh token (default: the current seeded one): refreshes get invalid_grant."""
        with self.lock:
            self.oauth.revoke_refresh_token(token)

    def fail_next_activity(
        self,
        errors: Iterable[str] | None = None,
        *,
        state: str = "failed",
        kind: str = IMPORT,
    ) -> None:
        """The next activity of ``kind`` ends in ``state`` (``failed``, ``cancelled`` or
        ``timed_out``) with these ``activity_errors`` and changes nothing.

        ``kind`` is ``"contacts_json_import"`` (the default: the next import imports nothing)
        or ``"remove_list_memberships"`` (the next removal removes nothing). ValueError for
        any other state or kind."""
        if state not in FAILED_ACTIVITY_STATES:
            raise ValueError(f"state must be one of {', '.join(FAILED_ACTIVITY_STATES)}")
        if kind not in ACTIVITY_KINDS:
            raise ValueError(f"kind must be one of {', '.join(ACTIVITY_KINDS)}")
        if errors is None:
            errors = ("Import failed",) if kind == IMPORT else ("Removing list memberships failed",)
        with self.lock:
            if kind == IMPORT:
                self.state.fail_next_activity = (state, list(errors))
            else:
                self.state.fail_next_removal = (state, list(errors))

    def mark_unsubscribed(self, emails: Iterable[str]) -> None:
        """These addresses are unsubscribed: imports update them but do not add them to lists."""
        with self.lock:
            self.state.mark_unsubscribed(list(emails))

    def mark_deleted(self, emails: Iterable[str]) -> None:
        """These contacts are deleted (created if unknown): out of every list, and listed by
        ``GET /v3/contacts`` only with ``status=all`` or ``status=deleted``. An import revives them."""
        with self.lock:
            self.state.mark_deleted(list(emails))

    def deny_next_consent(self) -> None:
        """The next consent (authorize or device verification page) is denied: access_denied."""
        with self.lock:
            self.oauth.deny_next_consent()

    def approve_device(self, user_code: str) -> None:
        """Approve a pending device authorization."""
        with self.lock:
            self.oauth.approve_device(user_code)

    def deny_device(self, user_code: str) -> None:
        """Deny a pending device authorization."""
        with self.lock:
            self.oauth.deny_device(user_code)
