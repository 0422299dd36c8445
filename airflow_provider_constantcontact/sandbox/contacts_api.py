"""The ``GET /v3/contacts`` route: its filters, keyset paging over contact indexes, the contact JSON."""

from __future__ import annotations

import base64
import binascii
import heapq
import json
import operator
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
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


#: The date filters of the listing: (query parameter, what it compares, True for "after").
_DATE_FILTERS = (
    ("updated_after", UPDATED, True),
    ("updated_before", UPDATED, False),
    ("created_after", CREATED, True),
    ("created_before", CREATED, False),
    ("optout_after", None, True),
    ("optout_before", None, False),
)


def _date_param(query: dict[str, str], name: str) -> float | None:
    """An ISO 8601 date or date-time parameter as epoch seconds (no offset: UTC); 400 when malformed."""
    raw = (query.get(name) or "").strip()
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw[:-1] + "+00:00" if raw[-1:] in "zZ" else raw)
    except ValueError:
        raise bad_request(
            f"{name} must be an ISO-8601 date or date-time, e.g. 2024-01-31T08:00:00.000Z.", "query.invalid"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


@dataclass(frozen=True)
class ContactQuery:
    """The filters of one contacts listing. ``dates``: (parameter, epoch seconds) of the date
    filters given; ``inclusive``: whether their bounds are included (``Account`` option)."""

    lists: tuple[str, ...] = ()
    statuses: frozenset[str] = DEFAULT_STATUSES
    email: str | None = None
    dates: tuple[tuple[str, float], ...] = ()
    inclusive: bool = False

    @classmethod
    def parse(cls, query: dict[str, str], inclusive: bool) -> ContactQuery:
        """The filters of the query parameters; 400 for a bad value."""
        lists = tuple(x for x in (query.get("lists") or "").split(",") if x)
        if len(lists) > MAX_QUERY_LISTS:
            raise bad_request(f"lists accepts at most {MAX_QUERY_LISTS} list ids.", "query.invalid")
        dates = tuple(
            (name, value) for name, *_ in _DATE_FILTERS if (value := _date_param(query, name)) is not None
        )
        statuses = _contact_statuses(query.get("status"))
        return cls(lists, statuses, query.get("email") or None, dates, inclusive)

    def bound(self, name: str) -> float | None:
        """The value of date filter ``name``, or None."""
        return next((value for n, value in self.dates if n == name), None)

    def date_test(self, state: Account) -> Callable[[str, dict[str, Any]], bool] | None:
        """A test of (key, record) against the date filters; None without date filters."""
        if not self.dates:
            return None
        after, before = (operator.ge, operator.le) if self.inclusive else (operator.gt, operator.lt)
        tests: list[tuple[str | None, Callable[[float, float], bool], float]] = []
        for name, field, is_after in _DATE_FILTERS:
            bound = self.bound(name)
            if bound is not None:
                tests.append((field, after if is_after else before, bound))
        opt_out_at = state.opt_out_at

        def test(key: str, record: dict[str, Any]) -> bool:
            for field, compare, bound in tests:
                value = record[field] if field else opt_out_at.get(key)
                if value is None or not compare(value, bound):
                    return False
            return True

        return test


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
    filters = ContactQuery.parse(query, state.date_filters_inclusive)
    include = query.get("include") or ""
    with lock:
        state.drain()
        if query.get("include_count") == "true" and count is None:
            count = count_contacts(state, filters)
        indexes = list(islice(contact_indexes(state, filters, after), limit + 1))
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
    email_updated = state.email_updated_at.get(key, 0.0)
    email_address = {
        "address": props.get("email"),
        "permission_to_send": "unsubscribed" if unsubscribed else "implicit",
        "created_at": created,
        "updated_at": iso(email_updated) if email_updated > props[UPDATED] else updated,
        "opt_in_source": "Account",
        "confirm_status": "off",
    }
    if unsubscribed:
        email_address.update(opt_out_source="Contact", opt_out_date=iso(state.opt_out_at[key]))
    out: dict[str, Any] = {"contact_id": state.contact_id(props), "email_address": email_address}
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


def contact_indexes(state: Account, q: ContactQuery, after: int) -> Iterator[int]:
    """Indexes above ``after`` of the contacts matching the listing's filters, ascending.

    Lazy, and cheap whatever the size of the account: one address is a lookup; opt-out
    filters and unsubscribed/deleted statuses walk those (small) sets; ``updated_after`` walks
    the contacts changed since (``Timeline``) when they are fewer than the contacts to walk
    otherwise; ``created_after`` starts at its first contact (indexes follow creation time);
    else the members of the lists (or every contact) are walked in index order from ``after``.
    """
    keys, contacts, status_of = state.contact_keys, state.contacts, state.contact_status
    statuses, lists = q.statuses, q.lists
    if not statuses:  # only statuses the sandbox never gives a contact (temp_hold, ...)
        return
    test = q.date_test(state)

    def matches(key: str, check_lists: bool = True) -> bool:
        return (
            status_of(key) in statuses
            and (test is None or test(key, contacts[key]))
            and (not check_lists or not lists or _in_lists(state, key, lists))
        )

    candidates: list[int] | None = None
    if q.email:
        record = contacts.get(q.email.lower())
        candidates = [record[INDEX]] if record is not None else []
    elif q.bound("optout_after") is not None or q.bound("optout_before") is not None:
        candidates = sorted(contacts[key][INDEX] for key in state.opt_out_at)
    elif statuses <= {UNSUBSCRIBED, DELETED}:  # walk the (small) status sets
        wanted: set[str] = set()
        if UNSUBSCRIBED in statuses:
            wanted |= state.unsubscribed - state.deleted
        if DELETED in statuses:
            wanted |= state.deleted
        candidates = sorted(contacts[key][INDEX] for key in wanted)
    elif (since := q.bound("updated_after")) is not None and state.timeline.count_since(
        since, q.inclusive
    ) <= _walk_size(state, lists):
        candidates = state.timeline.changed_since(since, q.inclusive)
    if candidates is not None:
        for index in candidates[bisect_right(candidates, after) :]:
            if matches(keys[index]):
                yield index
        return
    if (created_after := q.bound("created_after")) is not None:
        cut = bisect_left if q.inclusive else bisect_right
        after = max(after, cut(keys, created_after, key=lambda key: contacts[key][CREATED]) - 1)
    if not lists:
        source: Iterator[int] = iter(range(after + 1, len(keys)))
    else:
        orders = [state.member_order[list_id] for list_id in dict.fromkeys(lists) if list_id in state.lists]
        if len(orders) == 1:
            source = orders[0].after(after)
        else:
            source = _unique(heapq.merge(*(order.after(after) for order in orders)))
    if test is None and statuses >= {ACTIVE, UNSUBSCRIBED, DELETED}:
        yield from source
        return
    for index in source:
        if matches(keys[index], check_lists=False):
            yield index


def _walk_size(state: Account, lists: tuple[str, ...]) -> int:
    """How many contacts a listing without a better source walks: the lists' members, or all."""
    if not lists:
        return len(state.contacts)
    return sum(len(state.memberships.get(list_id, ())) for list_id in dict.fromkeys(lists))


def count_contacts(state: Account, q: ContactQuery) -> int:
    """How many contacts the listing's filters match (``include_count=true``)."""
    statuses, lists = q.statuses, q.lists
    if not statuses:
        return 0
    if q.email or q.dates or statuses <= {UNSUBSCRIBED, DELETED}:
        return sum(1 for _ in contact_indexes(state, q, -1))
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


def _in_lists(state: Account, key: str, lists: tuple[str, ...]) -> bool:
    return any(key in state.memberships.get(list_id, ()) for list_id in lists)


def _unique(values: Iterable[int]) -> Iterator[int]:
    """Sorted values without repeats (a contact in several of the listed lists)."""
    last = -1
    for value in values:
        if value != last:
            yield value
            last = value
