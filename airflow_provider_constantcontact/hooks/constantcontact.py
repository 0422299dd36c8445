"""Hook for the Constant Contact V3 API.

Every call of this provider goes through :class:`ConstantContactHook`: one ``requests.Session``
with timeouts, per-process pacing, retries (tenacity) and OAuth2 token handling, including
rotating refresh tokens persisted in an Airflow Variable. See ``docs/hook.md``.
"""

from __future__ import annotations

import json as jsonlib
import logging
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, urlsplit

from airflow_provider_constantcontact._compat import BaseHook, legacy_connection_form_widgets
from airflow_provider_constantcontact.connection_form import (
    EXTRA_FIELDS,
    HIDDEN_FIELDS,
    PLACEHOLDERS,
    RELABELING,
)
from airflow_provider_constantcontact.constants import (
    ACTIVITY_RECORD_DAYS,
    DEFAULT_API_BASE_URL,
    DEFAULT_TOKEN_URL,
    MAX_CONTACT_IDS_PER_REMOVAL,
    MAX_CUSTOM_FIELDS_PAGE_SIZE,
    MAX_IMPORT_BODY_BYTES,
    MAX_IMPORT_CONTACTS,
    MAX_LISTS_PER_CONTACTS_QUERY,
    MAX_LISTS_PER_REQUEST,
    MAX_PAGE_SIZE,
    MAX_REQUESTS_PER_SECOND,
    REQUIRED_SCOPES,
)
from airflow_provider_constantcontact.exceptions import (
    ConstantContactAuthError,
    ConstantContactError,
)
from airflow_provider_constantcontact.hooks._connection_check import check_connection
from airflow_provider_constantcontact.hooks._http import (
    HttpClient,
    Pacing,
    RetryPolicy,
    error_for_response,
)
from airflow_provider_constantcontact.hooks._token_store import TokenStore, VariableTokenStore
from airflow_provider_constantcontact.hooks._tokens import TokenManager

if TYPE_CHECKING:
    import requests
    from airflow.sdk import Connection

# The API facts are stated in constants.py; they stay importable from here for existing callers.
__all__ = [
    "DEFAULT_MAX_REQUESTS_PER_SECOND",
    "MAX_CONTACT_IDS_PER_REMOVAL",
    "MAX_IMPORT_BODY_BYTES",
    "MAX_IMPORT_CONTACTS",
    "MAX_LISTS_PER_REQUEST",
    "REQUIRED_SCOPES",
    "ConstantContactHook",
    "api_timestamp",
]

log = logging.getLogger(__name__)

#: Default pace of API calls (connection extra ``max_requests_per_second``): the API's own limit.
DEFAULT_MAX_REQUESTS_PER_SECOND = MAX_REQUESTS_PER_SECOND
MASKED_VALUE = "***"


def api_timestamp(value: datetime | str) -> str:
    """A date filter as the API takes it: ISO 8601 in UTC with milliseconds and ``Z``.

    Strings pass as they are. A naive datetime is refused: read as local time or as UTC it
    could shift the window of an ``updated_after`` query by hours and miss changes.
    """
    if isinstance(value, str):
        return value
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"Give a timezone-aware datetime (e.g. in UTC), got the naive {value.isoformat()}")
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class ConstantContactHook(BaseHook):
    """Talk to the Constant Contact V3 API with a ``constantcontact`` connection.

    :param constantcontact_conn_id: Connection id (login = client id, password = client secret,
        extra ``refresh_token``, ``api_base_url``, ``token_url``, ``max_requests_per_second``).
    :param connection: An already fetched Connection (a trigger passes the one it got from
        ``await BaseHook.aget_connection``), so the hook never looks it up itself.
    :param token_store: Where rotated tokens persist; default the Airflow Variable
        ``constantcontact_<conn_id>_oauth_tokens``.
    :param timeout: ``(connect, read)`` seconds for each HTTP request.
    :param max_attempts: Attempts per request for connection errors, 5xx and throttling.
    :param backoff_initial: First backoff in seconds (doubles each retry, plus up to ``backoff_jitter``).
    :param backoff_max: Longest single backoff in seconds.
    :param backoff_jitter: Random seconds added to each backoff.
    :param refresh_margin: Refresh the access token this many seconds before it expires.
    """

    conn_name_attr = "constantcontact_conn_id"
    default_conn_name = "constantcontact_default"
    conn_type = "constantcontact"
    hook_name = "Constant Contact"

    def __init__(
        self,
        constantcontact_conn_id: str = default_conn_name,
        *,
        connection: Connection | None = None,
        token_store: TokenStore | None = None,
        timeout: tuple[float, float] = (10.0, 60.0),
        max_attempts: int = 6,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        backoff_jitter: float = 1.0,
        refresh_margin: float = 300.0,
    ) -> None:
        super().__init__()
        if (
            connection is not None
            and connection.conn_id
            and constantcontact_conn_id == self.default_conn_name
        ):
            constantcontact_conn_id = connection.conn_id
        self.constantcontact_conn_id = constantcontact_conn_id
        self._connection = connection
        self._token_store = token_store
        self.timeout = timeout
        self.retry_policy = RetryPolicy(
            max_attempts=max_attempts,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            jitter=backoff_jitter,
        )
        self.refresh_margin = refresh_margin

    # ------------------------------------------------------------ connection form (Airflow < 3.2)
    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """The form's extra fields for Airflow 3.0 and 3.1 (3.2+ reads ``conn-fields`` instead)."""
        return legacy_connection_form_widgets(EXTRA_FIELDS)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Hidden and relabelled standard fields for Airflow 3.0 and 3.1 (3.2+: provider info)."""
        return {
            "hidden_fields": list(HIDDEN_FIELDS),
            "relabeling": dict(RELABELING),
            "placeholders": dict(PLACEHOLDERS),
        }

    # ------------------------------------------------------------------ connection and settings
    @cached_property
    def connection(self) -> Connection:
        """The Airflow connection (fetched once, unless one was passed in)."""
        return self._connection or self.get_connection(self.constantcontact_conn_id)

    @cached_property
    def _extra(self) -> dict[str, Any]:
        return self.connection.extra_dejson or {}

    def _url_setting(self, name: str, default: str) -> str:
        # The UI masks values of extra fields whose name contains "token", so a new connection
        # saved from the form can carry the placeholder "***" instead of the default URL.
        value = str(self._extra.get(name) or "").strip()
        if value in ("", MASKED_VALUE):
            return default
        if not value.startswith(("http://", "https://")):
            raise ValueError(
                f"Connection '{self.constantcontact_conn_id}': {name} must be an http(s) URL, got {value!r}"
            )
        return value

    @cached_property
    def api_base_url(self) -> str:
        """Root of the V3 API, without a trailing slash."""
        return self._url_setting("api_base_url", DEFAULT_API_BASE_URL).rstrip("/")

    @cached_property
    def token_url(self) -> str:
        """OAuth2 token endpoint."""
        return self._url_setting("token_url", DEFAULT_TOKEN_URL)

    @cached_property
    def max_requests_per_second(self) -> float:
        """Pace of API calls in this process; 0 turns pacing off."""
        value = self._extra.get("max_requests_per_second")
        if value is None or value == "":
            return DEFAULT_MAX_REQUESTS_PER_SECOND
        try:
            rate = float(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"Connection '{self.constantcontact_conn_id}': max_requests_per_second must be a number, "
                f"got {value!r}"
            ) from None
        if rate < 0:
            raise ValueError(
                f"Connection '{self.constantcontact_conn_id}': max_requests_per_second must be >= 0"
            )
        return rate

    @cached_property
    def _http(self) -> HttpClient:
        """The API client: paced per application (client id) across every hook of the process."""
        return HttpClient(
            timeout=self.timeout,
            policy=self.retry_policy,
            user_agent="airflow-provider-constantcontact",
            pacing=Pacing.shared(f"api:{self.connection.login}", self.max_requests_per_second),
        )

    @cached_property
    def tokens(self) -> TokenManager:
        """The token manager (access token cache, refresh, rotation store)."""
        conn = self.connection
        # No client secret means a public client (an application registered for PKCE or the
        # device flow without a secret): refreshes then send the client id in the form body.
        client_id = conn.login
        missing = [
            label
            for label, value in (
                ("Client ID (login)", client_id),
                ("refresh_token (extra)", self._extra.get("refresh_token")),
            )
            if not value
        ]
        if missing or not client_id:
            raise ConstantContactAuthError(
                f"Constant Contact connection '{self.constantcontact_conn_id}' lacks {', '.join(missing)}. "
                "Run `constantcontact-auth` to obtain a refresh token and see docs/hook.md."
            )
        return TokenManager(
            conn_id=self.constantcontact_conn_id,
            client_id=client_id,
            client_secret=conn.password,
            refresh_token=self._extra["refresh_token"],
            token_url=self.token_url,
            http=self._http,
            store=self._token_store or VariableTokenStore(self.constantcontact_conn_id),
            refresh_margin=self.refresh_margin,
            pacing=self.max_requests_per_second > 0,
        )

    def get_conn(self) -> requests.Session:
        """The shared ``requests.Session`` (authorisation is added per request)."""
        return self._http.session

    def close(self) -> None:
        """Close pooled HTTP connections."""
        if "_http" in self.__dict__:
            self._http.close()

    # ----------------------------------------------------------------------------------- HTTP
    def _url(self, path: str) -> str:
        """Resolve an API path, a host-relative ``_links`` href or an absolute URL of the API host."""
        base = urlsplit(self.api_base_url)
        if path.startswith(("http://", "https://")):
            if urlsplit(path).netloc != base.netloc:
                raise ValueError("Refusing to send the access token to a host other than api_base_url's")
            return path
        base_path = base.path.rstrip("/")
        if base_path and (path == base_path or path.startswith(base_path + "/")):
            return f"{base.scheme}://{base.netloc}{path}"
        return f"{self.api_base_url}/{path.lstrip('/')}"

    def _send(
        self,
        method: str,
        path: str,
        *,
        not_found_message: str | None = None,
        extra_headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """Send an authorised request: refresh once and retry once on 401; raise on errors."""
        method = method.upper()
        url = self._url(path)
        log_path = urlsplit(url).path  # never the query string: it may hold an email address

        def send(token: str) -> requests.Response:
            headers = {"Authorization": f"Bearer {token}", **(extra_headers or {})}
            return self._http.send(method, url, log_path=log_path, headers=headers, **kwargs)

        token = self.tokens.access_token()
        response = send(token)
        if response.status_code == 401:
            log.info("Constant Contact %s %s: 401, refreshing the access token once", method, log_path)
            response = send(self.tokens.access_token(stale=token))
        if response.status_code >= 400:
            raise error_for_response(response, method, log_path, hint=not_found_message)
        return response

    @staticmethod
    def _decode(response: requests.Response, method: str) -> Any:
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            path = urlsplit(response.url).path
            raise ConstantContactError(
                f"Constant Contact {method} {path} answered HTTP {response.status_code} with a body that is "
                f"not JSON: check the connection's api_base_url (default {DEFAULT_API_BASE_URL}).",
                status=response.status_code,
                method=method,
                path=path,
            ) from None

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        data: bytes | None = None,
        not_found_message: str | None = None,
    ) -> Any:
        """Call the API and return the decoded JSON (None for an empty body).

        Every API call of the hook goes through here. ``path`` is relative to ``api_base_url``
        (``"/contact_lists"``) or a host-relative ``_links`` href (``"/v3/contact_lists?cursor=..."``).
        ``data`` is sent as a JSON body as is. ``not_found_message`` is added to the
        :class:`ConstantContactNotFoundError` of a 404, to say what is missing and what to do.
        """
        kwargs: dict[str, Any] = {"params": params, "not_found_message": not_found_message}
        if json is not None:
            kwargs["json"] = json
        if data is not None:
            kwargs["data"] = data
            kwargs["extra_headers"] = {"Content-Type": "application/json"}
        return self._decode(self._send(method, path, **kwargs), method.upper())

    def _request_object(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """:meth:`request` for a call the API answers with a JSON object; anything else fails."""
        body = self.request(method, path, **kwargs)
        if not isinstance(body, dict):
            log_path = urlsplit(self._url(path)).path
            raise ConstantContactError(
                f"Constant Contact {method.upper()} {log_path} answered with no JSON object "
                f"({type(body).__name__}): check the connection's api_base_url (default "
                f"{DEFAULT_API_BASE_URL}).",
                method=method.upper(),
                path=log_path,
            )
        return body

    def _pages(
        self, path: str, items_key: str, params: dict[str, Any] | None
    ) -> Iterator[list[dict[str, Any]]]:
        """Yield the items of each page, one request a page, following ``_links.next.href``.

        The only pagination loop of the hook. ``None`` params are left out; pages after the
        first are fetched by their href alone, which carries the cursor and the original filters.
        """
        next_path: str | None = path
        page_params = {k: v for k, v in (params or {}).items() if v is not None}
        while next_path:
            body = self.request("GET", next_path, params=page_params or None) or {}
            yield list(body.get(items_key) or [])
            next_path = ((body.get("_links") or {}).get("next") or {}).get("href")
            page_params = {}

    def _paginate(self, path: str, items_key: str, params: dict[str, Any] | None) -> Iterator[dict[str, Any]]:
        """Yield every item of every page (see :meth:`_pages`)."""
        for page in self._pages(path, items_key, params):
            yield from page

    # ------------------------------------------------------------------------------ contact lists
    def iter_contact_lists(
        self, *, name: str | None = None, include_membership_count: bool = False
    ) -> Iterator[dict[str, Any]]:
        """Every contact list (optionally filtered by ``name``), following pagination."""
        params: dict[str, Any] = {"limit": MAX_PAGE_SIZE, "name": name}
        if include_membership_count:
            params["include_membership_count"] = "all"
        return self._paginate("/contact_lists", "lists", params)

    def get_contact_list(
        self, list_id: str, *, include_membership_count: bool | Literal["all", "active"] = False
    ) -> dict[str, Any]:
        """One contact list; :class:`ConstantContactNotFoundError` naming the id when unknown.

        ``include_membership_count``: True or ``"all"`` adds ``membership_count`` (every member),
        ``"active"`` counts only mailable members. One request whatever the list's size.
        """
        count = "all" if include_membership_count is True else include_membership_count or None
        return self._request_object(
            "GET",
            f"/contact_lists/{quote(str(list_id), safe='')}",
            params={"include_membership_count": count} if count else None,
            not_found_message=(
                f"Constant Contact has no contact list with id '{list_id}'. List ids are UUIDs: open the "
                "list in the Constant Contact web app (Contacts > Lists) and copy the id from the page's "
                "URL, or call find_contact_list(name)."
            ),
        )

    def find_contact_list(self, name: str) -> dict[str, Any] | None:
        """The list whose name is ``name`` (exact, else the only case-insensitive match), or None."""
        candidates = [lst for lst in self.iter_contact_lists(name=name) if isinstance(lst, dict)]
        exact = [lst for lst in candidates if lst.get("name") == name]
        if exact:
            return exact[0]
        folded = [lst for lst in candidates if str(lst.get("name", "")).casefold() == name.casefold()]
        return folded[0] if len(folded) == 1 else None

    def create_contact_list(
        self, name: str, *, description: str | None = None, favorite: bool = False
    ) -> dict[str, Any]:
        """Create a contact list (409 → ConstantContactValidationError when the name exists)."""
        body: dict[str, Any] = {"name": name, "favorite": favorite}
        if description is not None:
            body["description"] = description
        return self._request_object("POST", "/contact_lists", json=body)

    # ---------------------------------------------------------------------------- custom fields
    def get_custom_fields(self) -> list[dict[str, Any]]:
        """All custom fields (``custom_field_id``, ``name``, ``label``, ``type``), every page."""
        return list(
            self._paginate("/contact_custom_fields", "custom_fields", {"limit": MAX_CUSTOM_FIELDS_PAGE_SIZE})
        )

    # ---------------------------------------------------------------------------------- imports
    def import_contacts(self, contacts: Sequence[dict[str, Any]], list_ids: Sequence[str]) -> dict[str, Any]:
        """Start a JSON import of ``contacts`` into ``list_ids``; return the activity."""
        if not 1 <= len(list_ids) <= MAX_LISTS_PER_REQUEST:
            raise ValueError(f"An import needs 1 to {MAX_LISTS_PER_REQUEST} list ids, got {len(list_ids)}")
        if len(contacts) > MAX_IMPORT_CONTACTS:
            raise ValueError(
                f"An import takes at most {MAX_IMPORT_CONTACTS:,} contacts, got {len(contacts):,}"
            )
        body = jsonlib.dumps(
            {"import_data": list(contacts), "list_ids": list(list_ids)},
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
        return self.import_contacts_body(body)

    def import_contacts_body(self, body: bytes) -> dict[str, Any]:
        """POST an already encoded JSON import body as is; return the activity.

        Bodies over :data:`MAX_IMPORT_BODY_BYTES` are refused, because the API would silently
        import only their first 4 MB. A retried POST is safe: imports are upserts by email.
        """
        if len(body) > MAX_IMPORT_BODY_BYTES:
            raise ValueError(
                f"Import body of {len(body):,} bytes exceeds {MAX_IMPORT_BODY_BYTES:,}: Constant Contact "
                "would silently drop the rest. Split the contacts into smaller batches."
            )
        return self._request_object("POST", "/activities/contacts_json_import", data=body)

    # ------------------------------------------------------------------------------- activities
    def get_activity(self, activity_id: str) -> dict[str, Any]:
        """One bulk activity (state, percent_done, status counters, activity_errors)."""
        return self._request_object(
            "GET",
            f"/activities/{quote(str(activity_id), safe='')}",
            not_found_message=(
                f"No activity '{activity_id}': Constant Contact keeps activity records for "
                f"{ACTIVITY_RECORD_DAYS} days."
            ),
        )

    def iter_activities(
        self, *, state: str | None = None, limit: int = MAX_PAGE_SIZE
    ) -> Iterator[dict[str, Any]]:
        """Recent activities (last 10 days), optionally in one ``state``, following pagination."""
        return self._paginate("/activities", "activities", {"limit": limit, "state": state})

    def remove_list_memberships(self, contact_ids: Sequence[str], list_ids: Sequence[str]) -> dict[str, Any]:
        """Remove contacts (by contact id, at most 500) from lists (at most 50); return the activity."""
        if not 1 <= len(contact_ids) <= MAX_CONTACT_IDS_PER_REMOVAL:
            raise ValueError(f"Give 1 to {MAX_CONTACT_IDS_PER_REMOVAL} contact ids, got {len(contact_ids)}")
        if not 1 <= len(list_ids) <= MAX_LISTS_PER_REQUEST:
            raise ValueError(f"Give 1 to {MAX_LISTS_PER_REQUEST} list ids, got {len(list_ids)}")
        return self._request_object(
            "POST",
            "/activities/remove_list_memberships",
            json={"source": {"contact_ids": list(contact_ids)}, "list_ids": list(list_ids)},
        )

    # --------------------------------------------------------------------------------- contacts
    def iter_contact_pages(
        self,
        list_id: str | None = None,
        *,
        status: str | None = None,
        limit: int = MAX_PAGE_SIZE,
        updated_after: datetime | str | None = None,
        updated_before: datetime | str | None = None,
        optout_after: datetime | str | None = None,
        include: str | Sequence[str] = (),
        lists: Sequence[str] | None = None,
    ) -> Iterator[list[dict[str, Any]]]:
        """Contacts, a page (``contacts`` items) per ``GET /contacts`` request.

        Yields one list per request, lazily, so a caller can count requests, log progress and
        stop early (N contacts cost N / ``limit`` requests). Filters, as the API applies them:
        ``list_id`` and/or ``lists`` (members of any of these lists, at most 25 ids in all);
        ``status`` (``all`` adds deleted contacts); ``updated_after`` / ``updated_before`` /
        ``optout_after`` (aware datetimes or ISO 8601 strings); ``include`` adds sub-resources
        (``"list_memberships"``, ...). No filter is required: without one every contact of the
        account is listed, a page at a time. ``limit`` is the page size, 1 to 500. Arguments
        the API would refuse raise ``ValueError`` before any request.
        """
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValueError(f"limit must be 1 to {MAX_PAGE_SIZE}, got {limit}")
        if isinstance(lists, str):
            raise ValueError("lists takes a sequence of list ids, e.g. ['<uuid>', '<uuid>'], not one string")
        list_ids = list(dict.fromkeys([*([list_id] if list_id else []), *(lists or ())]))
        if len(list_ids) > MAX_LISTS_PER_CONTACTS_QUERY:
            raise ValueError(
                f"A contacts query takes at most {MAX_LISTS_PER_CONTACTS_QUERY} list ids, "
                f"got {len(list_ids)}: query the lists in groups"
            )
        parts = [include] if isinstance(include, str) else list(include)
        params = {
            "lists": ",".join(list_ids) or None,
            "status": status,
            "updated_after": None if updated_after is None else api_timestamp(updated_after),
            "updated_before": None if updated_before is None else api_timestamp(updated_before),
            "optout_after": None if optout_after is None else api_timestamp(optout_after),
            "include": ",".join(dict.fromkeys(parts)) or None,
            "limit": limit,
        }
        return self._pages("/contacts", "contacts", params)

    def iter_contacts(
        self,
        *,
        list_id: str | None = None,
        email: str | None = None,
        status: str | None = None,
        limit: int = MAX_PAGE_SIZE,
    ) -> Iterator[dict[str, Any]]:
        """Contacts, optionally of one list / with one email / status, following pagination."""
        return self._paginate(
            "/contacts", "contacts", {"lists": list_id, "email": email, "status": status, "limit": limit}
        )

    # -------------------------------------------------------------------------- test connection
    def test_connection(self) -> tuple[bool, str]:
        """Check credentials, refresh token, scopes and API URL; return ``(ok, message)``.

        Used by the UI's Test button (API server, outside any task): a rotated refresh token is
        saved to the Variable store there too (see docs/hook.md). The checks are in
        ``hooks/_connection_check.py``.
        """
        return check_connection(self)
