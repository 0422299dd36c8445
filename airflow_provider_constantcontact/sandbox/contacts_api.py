"""The ``GET /v3/contacts`` route: its filters, keyset paging over contact indexes, the contact JSON."""

from __future__ import annotations

import base64
import binascii
import heapq
import json
import threading
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any
from urllib.parse import urlencode

from airflow_provider_constantcontact.sandbox.account import (
    ACTIVE,
    CREATED,
    DEFAULT_STATUSES,
    DELETED,
    INDEX,
    UNSUBSCRIBED,
    UPDATED,
    Account,
)
from airflow_provider_constantcontact.sandbox.activities import iso
from airflow_provider_constantcontact.sandbox.constants import (
    CONTACT_STATUSES,
    MAX_CONTACTS_PAGE,
    MAX_QUERY_LISTS,
)
from airflow_provider_constantcontact.sandbox.errors import bad_request
from airflow_provider_constantcontact.sandbox.routing import Request, int_param

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


def get_contacts(state: Account, lock: threading.RLock, request: Request) -> tuple[int, Any]:
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
    limit = int_param(query, "limit", 50, 1, MAX_CONTACTS_PAGE)
    lists = [x for x in (query.get("lists") or "").split(",") if x]
    if len(lists) > MAX_QUERY_LISTS:
        raise bad_request(f"lists accepts at most {MAX_QUERY_LISTS} list ids.", "query.invalid")
    statuses = _contact_statuses(query.get("status"))
    email = query.get("email") or None
    include = query.get("include") or ""
    with lock:
        state.drain()
        if query.get("include_count") == "true" and count is None:
            count = count_contacts(state, lists, statuses, email)
        indexes = list(islice(contact_indexes(state, lists, statuses, email, after), limit + 1))
        keys = state.contact_keys
        page = [_contact_json(state, keys[i], state.contacts[keys[i]], include) for i in indexes[:limit]]
    body: dict[str, Any] = {"contacts": page}
    if query.get("include_count") == "true":
        body["contacts_count"] = count
    if len(indexes) > limit:
        next_cursor = _encode_cursor([query, indexes[limit - 1], count])
        body["_links"] = {"next": {"href": f"{request.path}?{urlencode({'cursor': next_cursor})}"}}
    return 200, body


def _contact_json(state: Account, key: str, props: dict[str, Any], include: str) -> dict[str, Any]:
    """A stored contact as the listing returns it, with the ``include`` (comma-separated) parts."""
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


def contact_indexes(
    state: Account, lists: list[str], statuses: frozenset[str], email: str | None, after: int
) -> Iterator[int]:
    """Indexes above ``after`` of the contacts matching the listing's filters, ascending.

    Lazy and O(items produced) when few contacts are filtered out: the members of the
    lists are walked in index order from ``after`` on (a merge for several lists).
    """
    keys, status_of = state.contact_keys, state.contact_status
    if not statuses:  # only statuses the sandbox never gives a contact (temp_hold, ...)
        return
    if email:
        key = email.lower()
        record = state.contacts.get(key)
        if (
            record is not None
            and record[INDEX] > after
            and status_of(key) in statuses
            and (not lists or _in_lists(state, key, lists))
        ):
            yield record[INDEX]
        return
    if statuses <= {UNSUBSCRIBED, DELETED}:  # walk the (small) status sets
        wanted = set()
        if UNSUBSCRIBED in statuses:
            wanted |= state.unsubscribed - state.deleted
        if DELETED in statuses:
            wanted |= state.deleted
        candidates = sorted(state.contacts[key][INDEX] for key in wanted)
        for index in candidates:
            if index > after and (not lists or _in_lists(state, keys[index], lists)):
                yield index
        return
    if not lists:
        source: Iterator[int] = iter(range(after + 1, len(keys)))
    else:
        orders = [state.member_order[list_id] for list_id in dict.fromkeys(lists) if list_id in state.lists]
        if len(orders) == 1:
            source = orders[0].after(after)
        else:
            source = _unique(heapq.merge(*(order.after(after) for order in orders)))
    everyone = statuses >= {ACTIVE, UNSUBSCRIBED, DELETED}
    for index in source:
        if everyone or status_of(keys[index]) in statuses:
            yield index


def count_contacts(state: Account, lists: list[str], statuses: frozenset[str], email: str | None) -> int:
    """How many contacts the listing's filters match (``include_count=true``)."""
    if not statuses:
        return 0
    if email or statuses <= {UNSUBSCRIBED, DELETED}:
        return sum(1 for _ in contact_indexes(state, lists, statuses, email, -1))
    if lists:
        sets = [state.memberships[list_id] for list_id in dict.fromkeys(lists) if list_id in state.lists]
        union: set[str] | dict[str, Any] = sets[0] if len(sets) == 1 else set().union(*sets)
    else:
        union = state.contacts
    count = len(union)
    for status, keys in ((DELETED, state.deleted), (UNSUBSCRIBED, state.unsubscribed - state.deleted)):
        if status not in statuses:
            count -= sum(1 for key in keys if key in union)
    return count


def _in_lists(state: Account, key: str, lists: list[str]) -> bool:
    return any(key in state.memberships.get(list_id, ()) for list_id in lists)


def _unique(values: Iterable[int]) -> Iterator[int]:
    """Sorted values without repeats (a contact in several of the listed lists)."""
    last = -1
    for value in values:
        if value != last:
            yield value
            last = value
