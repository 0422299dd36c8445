"""Routes of the emulated V3 API (everything under ``/v3``)."""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from typing import Any
from urllib.parse import urlencode

from airflow_provider_constantcontact.sandbox.activities import iso
from airflow_provider_constantcontact.sandbox.constants import (
    ACTIVITY_STATES,
    CONTACT_STATUSES,
    MAX_CONTACTS_PAGE,
    MAX_LIST_IDS,
    MAX_QUERY_LISTS,
    MAX_REMOVE_CONTACT_IDS,
)
from airflow_provider_constantcontact.sandbox.errors import (
    bad_request,
    error_list,
    not_found,
    reject_unknown_properties,
)
from airflow_provider_constantcontact.sandbox.imports import parse_json_body, take_import, validate_contacts
from airflow_provider_constantcontact.sandbox.state import (
    ACTIVE,
    CREATED,
    DEFAULT_STATUSES,
    DELETED,
    UNSUBSCRIBED,
    UPDATED,
    SandboxState,
)

_MAX_SNAPSHOTS = 64
_CONTACT_FIELDS = (
    "first_name",
    "last_name",
    "job_title",
    "company_name",
    "birthday_month",
    "birthday_day",
    "anniversary",
)
_PHONE_KINDS = {
    "phone": "other",
    "home_phone": "home",
    "work_phone": "work",
    "mobile_phone": "mobile",
    "other_phone": "other",
    "fax": "fax",
}
_ADDRESS_KINDS = {"": "home", "home_": "home", "work_": "work", "other_": "other"}
#: The top-level properties each POST body may hold.
_LIST_PROPERTIES = frozenset({"name", "description", "favorite"})
_CUSTOM_FIELD_PROPERTIES = frozenset({"label", "type"})
_REMOVE_PROPERTIES = frozenset({"source", "list_ids"})
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
#: What each ``status`` of the contacts listing matches among the statuses the sandbox stores.
_STATUS_MATCHES: dict[str, frozenset[str]] = {
    "all": frozenset({ACTIVE, UNSUBSCRIBED, DELETED}),
    "active": frozenset({ACTIVE}),
    "unsubscribed": frozenset({UNSUBSCRIBED}),
    "deleted": frozenset({DELETED}),
}


def _contact_statuses(raw: str | None) -> frozenset[str]:
    """The stored statuses a ``status`` parameter (comma-separated) selects; 400 when unknown."""
    names = [x for x in (raw or "").split(",") if x]
    if not names:
        return DEFAULT_STATUSES
    if any(name not in CONTACT_STATUSES for name in names):
        raise bad_request("status is not valid.", "query.invalid")
    return frozenset().union(*(_STATUS_MATCHES.get(name, frozenset()) for name in names))


def _encode_cursor(value: Any) -> str:
    raw = json.dumps(value, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _decode_cursor(cursor: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(cursor.encode() + b"==="))


@dataclass
class Request:
    """What a route sees of an HTTP request."""

    method: str
    path: str
    query: dict[str, str]
    headers: Any
    body: bytes
    client_id: str = ""


def _int_param(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"{name} must be an integer.", "query.invalid") from None
    if not low <= value <= high:
        raise bad_request(f"{name} must be between {low} and {high}.", "query.invalid")
    return value


def _require_json(request: Request) -> Any:
    content_type = request.headers.get("Content-Type") or ""
    if "json" not in content_type.lower():
        raise error_list(415, "unsupported_media_type", "Content-Type must be application/json.")
    return parse_json_body(request.body)


class Api:
    """The /v3 routes over a ``SandboxState``; ``lock`` guards the state, ``on_import`` is
    called after an import was queued (it wakes the applier)."""

    def __init__(
        self, state: SandboxState, lock: threading.RLock, on_import: Callable[[], None] = lambda: None
    ) -> None:
        self.state = state
        self.lock = lock
        self.on_import = on_import
        self._snapshots: OrderedDict[str, list[Any]] = OrderedDict()
        self._routes: list[tuple[str, re.Pattern[str], Callable[..., tuple[int, Any]]]] = [
            ("GET", re.compile(r"/v3/contact_lists"), self.get_lists),
            ("POST", re.compile(r"/v3/contact_lists"), self.post_list),
            ("GET", re.compile(r"/v3/contact_lists/([^/]+)"), self.get_list),
            ("GET", re.compile(r"/v3/contact_custom_fields"), self.get_custom_fields),
            ("POST", re.compile(r"/v3/contact_custom_fields"), self.post_custom_field),
            ("GET", re.compile(r"/v3/contacts"), self.get_contacts),
            ("POST", re.compile(r"/v3/activities/contacts_json_import"), self.post_import),
            ("POST", re.compile(r"/v3/activities/remove_list_memberships"), self.post_remove),
            ("GET", re.compile(r"/v3/activities"), self.get_activities),
            ("GET", re.compile(r"/v3/activities/([^/]+)"), self.get_activity),
        ]

    def dispatch(self, request: Request) -> tuple[int, Any]:
        """Run the route matching the request; 404/405 otherwise."""
        path = request.path.rstrip("/") or "/"
        allowed = False
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(path)
            if match:
                allowed = True
                if method == request.method:
                    return handler(request, *match.groups())
        if allowed:
            raise error_list(405, "method_not_allowed", "Method Not Allowed")
        raise not_found("The requested resource does not exist.")

    # -- pagination --------------------------------------------------------------------------

    def _page(
        self,
        request: Request,
        collection: str,
        items: Callable[[dict[str, str]], list[Any]],
        render: Callable[[Any, dict[str, str]], dict[str, Any] | None],
        *,
        default_limit: int,
        max_limit: int,
        extra: Callable[[dict[str, str], list[Any]], dict[str, Any]] | None = None,
    ) -> tuple[int, Any]:
        """One page of a collection. The first request snapshots the matching ids; the
        ``cursor`` in ``_links.next.href`` carries the query, the snapshot and the offset."""
        cursor = request.query.get("cursor")
        with self.lock:
            if cursor:
                try:
                    token, offset, query = json.loads(base64.urlsafe_b64decode(cursor.encode() + b"==="))
                    snapshot = self._snapshots[token]
                except (ValueError, KeyError, TypeError, binascii.Error):
                    raise bad_request("The cursor is invalid or has expired.", "cursor.invalid") from None
            else:
                query = {k: v for k, v in request.query.items() if k != "cursor"}
                token, offset = secrets.token_urlsafe(9), 0
                snapshot = items(query)
            limit = _int_param(query, "limit", default_limit, 1, max_limit)
            page = [
                r
                for r in (render(item, query) for item in snapshot[offset : offset + limit])
                if r is not None
            ]
            body: dict[str, Any] = {collection: page}
            if extra is not None:
                body.update(extra(query, snapshot))
            if offset + limit < len(snapshot):
                self._snapshots[token] = snapshot
                self._snapshots.move_to_end(token)
                while len(self._snapshots) > _MAX_SNAPSHOTS:
                    self._snapshots.popitem(last=False)
                raw = json.dumps([token, offset + limit, query], separators=(",", ":")).encode()
                next_cursor = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
                body["_links"] = {"next": {"href": f"{request.path}?{urlencode({'cursor': next_cursor})}"}}
            else:
                self._snapshots.pop(token, None)
        return 200, body

    # -- contact lists -----------------------------------------------------------------------

    def get_lists(self, request: Request) -> tuple[int, Any]:
        def items(query: dict[str, str]) -> list[str]:
            membership = query.get("include_membership_count")
            if membership not in (None, "", "all", "active"):
                raise bad_request("include_membership_count must be all or active.", "query.invalid")
            return self.state.find_list_ids(query.get("name"))

        def render(list_id: str, query: dict[str, str]) -> dict[str, Any] | None:
            if list_id not in self.state.lists:
                return None
            return self.state.list_json(list_id, query.get("include_membership_count"))

        return self._page(
            request,
            "lists",
            items,
            render,
            default_limit=50,
            max_limit=1000,
            extra=lambda _q, snapshot: {"lists_count": len(snapshot)},
        )

    def post_list(self, request: Request) -> tuple[int, Any]:
        body = _require_json(request)
        if not isinstance(body, dict):
            raise bad_request("The request body must be a JSON object.")
        reject_unknown_properties(body, _LIST_PROPERTIES, "contact_lists.unknown_property")
        with self.lock:
            created = self.state.create_list(
                body.get("name"), body.get("description"), body.get("favorite", False)
            )
            return 201, dict(created)

    def get_list(self, request: Request, list_id: str) -> tuple[int, Any]:
        with self.lock:
            return 200, self.state.list_json(list_id, request.query.get("include_membership_count"))

    # -- custom fields -----------------------------------------------------------------------

    def get_custom_fields(self, request: Request) -> tuple[int, Any]:
        return self._page(
            request,
            "custom_fields",
            lambda _q: list(self.state.custom_fields),
            lambda field_id, _q: dict(self.state.custom_fields[field_id]),
            default_limit=50,
            max_limit=100,
        )

    def post_custom_field(self, request: Request) -> tuple[int, Any]:
        body = _require_json(request)
        if isinstance(body, dict):
            reject_unknown_properties(body, _CUSTOM_FIELD_PROPERTIES, "custom_fields.unknown_property")
        if not isinstance(body, dict) or not isinstance(body.get("label"), str) or not body["label"].strip():
            raise bad_request("label is required.", "custom_fields.label.invalid")
        label = body["label"].strip()[:50]
        name = re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_") or "field"
        with self.lock:
            return 201, dict(self.state.create_custom_field(name, label, body.get("type", "string")))

    # -- contacts ----------------------------------------------------------------------------

    def get_contacts(self, request: Request) -> tuple[int, Any]:
        """One page of contacts, in contact creation order.

        Keyset paging: the cursor carries the query, the last contact index served and the
        count, so each request costs O(page) whatever the size of the lists, and holds no
        server-side state (a cursor never expires).
        """
        cursor = request.query.get("cursor")
        if cursor:
            try:
                query, after, count = _decode_cursor(cursor)
                if not isinstance(query, dict) or not isinstance(after, int):
                    raise TypeError
            except (ValueError, TypeError, binascii.Error):
                raise bad_request("The cursor is invalid or has expired.", "cursor.invalid") from None
        else:
            query = {k: v for k, v in request.query.items() if k != "cursor"}
            after, count = -1, None
        limit = _int_param(query, "limit", 50, 1, MAX_CONTACTS_PAGE)
        lists = [x for x in (query.get("lists") or "").split(",") if x]
        if len(lists) > MAX_QUERY_LISTS:
            raise bad_request(f"lists accepts at most {MAX_QUERY_LISTS} list ids.", "query.invalid")
        statuses = _contact_statuses(query.get("status"))
        email = query.get("email") or None
        include = query.get("include") or ""
        with self.lock:
            state = self.state
            state.drain()
            if query.get("include_count") == "true" and count is None:
                count = state.count_contacts(lists, statuses, email)
            indexes = list(islice(state.contact_indexes(lists, statuses, email, after), limit + 1))
            keys = state.contact_keys
            page = [self._contact_json(keys[i], state.contacts[keys[i]], include) for i in indexes[:limit]]
        body: dict[str, Any] = {"contacts": page}
        if query.get("include_count") == "true":
            body["contacts_count"] = count
        if len(indexes) > limit:
            next_cursor = _encode_cursor([query, indexes[limit - 1], count])
            body["_links"] = {"next": {"href": f"{request.path}?{urlencode({'cursor': next_cursor})}"}}
        return 200, body

    def _contact_json(self, key: str, props: dict[str, Any], include: str) -> dict[str, Any]:
        state = self.state
        unsubscribed = key in state.unsubscribed
        created, updated = iso(props[CREATED]), iso(props[UPDATED])
        out: dict[str, Any] = {
            "contact_id": state.contact_id(props),
            "email_address": {
                "address": props.get("email"),
                "permission_to_send": "unsubscribed" if unsubscribed else "implicit",
                "created_at": created,
                "updated_at": updated,
                "opt_in_source": "Account",
                "confirm_status": "off",
            },
        }
        for name in _CONTACT_FIELDS:
            if props.get(name) is not None:
                out[name] = props[name]
        out.update(create_source="Account", created_at=created, updated_at=updated, update_source="Account")
        includes = set(include.split(","))
        if "list_memberships" in includes:
            out["list_memberships"] = state.contact_lists_of(key)
        if "custom_fields" in includes:
            out["custom_fields"] = [
                {"custom_field_id": state.custom_field_names[name[3:]], "value": value}
                for name, value in props.items()
                if name.startswith("cf:") and name[3:] in state.custom_field_names and value is not None
            ]
        if "phone_numbers" in includes:
            out["phone_numbers"] = [
                {"phone_number": props[name], "kind": kind}
                for name, kind in _PHONE_KINDS.items()
                if props.get(name)
            ]
        if "street_addresses" in includes:
            out["street_addresses"] = [
                {
                    "kind": kind,
                    "street": props.get(prefix + "street"),
                    "city": props.get(prefix + "city"),
                    "state": props.get(prefix + "state"),
                    "postal_code": props.get(prefix + "zip"),
                    "country": props.get(prefix + "country"),
                }
                for prefix, kind in _ADDRESS_KINDS.items()
                if any(props.get(prefix + f) for f in ("street", "city", "state", "zip", "country"))
            ]
        return out

    # -- activities --------------------------------------------------------------------------

    def post_import(self, request: Request) -> tuple[int, Any]:
        payload = _require_json(request)
        contacts, list_ids = take_import(request.body, payload)
        with self.lock:
            self.state.check_list_ids(list_ids)
            custom_field_names = frozenset(self.state.custom_field_names)
        validate_contacts(contacts, custom_field_names)
        with self.lock:
            self.state.check_list_ids(list_ids)
            body = self.state.accept_import(contacts, list_ids).to_json()
        self.on_import()
        return 201, body

    def post_remove(self, request: Request) -> tuple[int, Any]:
        payload = _require_json(request)
        if isinstance(payload, dict):
            reject_unknown_properties(payload, _REMOVE_PROPERTIES, "remove_list_memberships.unknown_property")
        if not isinstance(payload, dict) or not isinstance(payload.get("source"), dict):
            raise bad_request("source is required.", "source.invalid")
        contact_ids = payload["source"].get("contact_ids")
        list_ids = payload.get("list_ids")
        if set(payload["source"]) != {"contact_ids"}:
            raise bad_request("The sandbox supports source.contact_ids only.", "source.invalid")
        if not isinstance(contact_ids, list) or not 1 <= len(contact_ids) <= MAX_REMOVE_CONTACT_IDS:
            raise bad_request(
                f"source.contact_ids must hold 1 to {MAX_REMOVE_CONTACT_IDS} ids.", "source.invalid"
            )
        if not all(isinstance(i, str) and _UUID.fullmatch(i) for i in contact_ids):
            raise bad_request("source.contact_ids must hold contact ids (UUIDs).", "source.invalid")
        if not isinstance(list_ids, list) or not 1 <= len(list_ids) <= MAX_LIST_IDS:
            raise bad_request(f"list_ids must hold 1 to {MAX_LIST_IDS} list ids.", "list_ids.invalid")
        if not all(isinstance(list_id, str) for list_id in list_ids):
            raise bad_request("list_ids must be strings.", "list_ids.invalid")
        with self.lock:
            self.state.check_list_ids(list_ids)
            return 201, self.state.accept_remove(contact_ids, list_ids).to_json()

    def get_activity(self, request: Request, activity_id: str) -> tuple[int, Any]:
        with self.lock:
            return 200, self.state.get_activity(activity_id).to_json()

    def get_activities(self, request: Request) -> tuple[int, Any]:
        state = self.state

        def items(query: dict[str, str]) -> list[str]:
            wanted = query.get("state")
            if wanted and wanted not in ACTIVITY_STATES:
                raise bad_request("state is not valid.", "query.invalid")
            ids = list(reversed(state.activities))  # newest first
            if wanted:
                ids = [i for i in ids if state.get_activity(i).state == wanted]
            return ids

        def render(activity_id: str, _q: dict[str, str]) -> dict[str, Any]:
            return state.get_activity(activity_id).to_json()

        return self._page(request, "activities", items, render, default_limit=50, max_limit=500)
