"""Routes of the emulated V3 API (everything under ``/v3``): dispatch, snapshot paging, lists,
custom fields and activities. The contacts listing is in contacts_api.py."""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import urlencode

from airflow_provider_constantcontact.sandbox.constants import (
    ACTIVITY_STATES,
    MAX_LIST_IDS,
    MAX_REMOVE_CONTACT_IDS,
)
from airflow_provider_constantcontact.sandbox.contacts_api import get_contacts
from airflow_provider_constantcontact.sandbox.errors import (
    bad_request,
    reject_unknown_properties,
)
from airflow_provider_constantcontact.sandbox.imports import take_import, validate_contacts
from airflow_provider_constantcontact.sandbox.routing import Request, dispatch, int_param, require_json
from airflow_provider_constantcontact.sandbox.state import SandboxState

_MAX_SNAPSHOTS = 64
#: The top-level properties each POST body may hold.
_LIST_PROPERTIES = frozenset({"name", "description", "favorite"})
_CUSTOM_FIELD_PROPERTIES = frozenset({"label", "type"})
_REMOVE_PROPERTIES = frozenset({"source", "list_ids"})
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


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
            ("GET", re.compile(r"/v3/contacts"), partial(get_contacts, state, lock)),
            ("POST", re.compile(r"/v3/activities/contacts_json_import"), self.post_import),
            ("POST", re.compile(r"/v3/activities/remove_list_memberships"), self.post_remove),
            ("GET", re.compile(r"/v3/activities"), self.get_activities),
            ("GET", re.compile(r"/v3/activities/([^/]+)"), self.get_activity),
        ]

    def dispatch(self, request: Request) -> tuple[int, Any]:
        """Run the route matching the request; 404/405 otherwise."""
        return dispatch(self._routes, request)

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
            limit = int_param(query, "limit", default_limit, 1, max_limit)
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
        body = require_json(request)
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
        body = require_json(request)
        if isinstance(body, dict):
            reject_unknown_properties(body, _CUSTOM_FIELD_PROPERTIES, "custom_fields.unknown_property")
        if not isinstance(body, dict) or not isinstance(body.get("label"), str) or not body["label"].strip():
            raise bad_request("label is required.", "custom_fields.label.invalid")
        label = body["label"].strip()[:50]
        name = re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_") or "field"
        with self.lock:
            return 201, dict(self.state.create_custom_field(name, label, body.get("type", "string")))

    # -- activities --------------------------------------------------------------------------

    def post_import(self, request: Request) -> tuple[int, Any]:
        payload = require_json(request)
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
        payload = require_json(request)
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
            state.forget_expired_activities()
            ids = list(reversed(state.activities))  # newest first
            if wanted:
                ids = [i for i in ids if state.get_activity(i).state == wanted]
            return ids

        def render(activity_id: str, _q: dict[str, str]) -> dict[str, Any] | None:
            if activity_id not in state.activities:  # expired since the listing began
                return None
            return state.get_activity(activity_id).to_json()

        return self._page(request, "activities", items, render, default_limit=50, max_limit=500)
