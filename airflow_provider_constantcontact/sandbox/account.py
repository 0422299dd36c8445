"""The emulated account's data: contact lists, custom fields, contacts and list memberships.

Not thread-safe on its own: the sandbox holds one lock around every call. Reads that depend on
contacts call ``drain`` first; ``SandboxState`` (state.py) overrides it to apply queued imports
and completed removals.

A list's members are a set of contact keys plus an ``IndexOrder`` of their contact indexes,
so the contacts listing pages through a list in index order, O(page) per request.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Iterable
from itertools import filterfalse
from operator import itemgetter
from typing import Any

from airflow_provider_constantcontact.sandbox.activities import iso
from airflow_provider_constantcontact.sandbox.constants import (
    IMPORT_FIELD_LIMITS,
    IMPORT_INT_FIELDS,
    MAX_CUSTOM_FIELDS,
    MAX_LISTS,
)
from airflow_provider_constantcontact.sandbox.errors import bad_request, error_list, not_found
from airflow_provider_constantcontact.sandbox.imports import all_valid_emails
from airflow_provider_constantcontact.sandbox.ordering import IndexOrder
from airflow_provider_constantcontact.sandbox.timeline import Timeline

#: Internal keys of a stored contact record, next to its import properties. Records are plain
#: dicts of atomic values so the garbage collector untracks them: a million of them must not
#: make every full collection scan a million objects.
INDEX, CREATED, UPDATED = "_index", "_created", "_updated"
#: Contact statuses the sandbox stores (any other status of the API matches no contact).
ACTIVE, UNSUBSCRIBED, DELETED = "active", "unsubscribed", "deleted"
#: What ``GET /v3/contacts`` returns without ``status``: every contact that is not deleted.
DEFAULT_STATUSES = frozenset({ACTIVE, UNSUBSCRIBED})


def public_props(record: dict[str, Any]) -> dict[str, Any]:
    """A record's import properties (``email``, ``first_name``, ``cf:<name>``, ...)."""
    return {k: v for k, v in record.items() if k[0] != "_"}


#: How list names might be compared for uniqueness (409) and the ``name`` filter: Constant Contact
#: does not document it. "exact"; "casefold" (the default: case-insensitive); "normalized"
#: (Unicode NFKC, white space runs as one, no space at either end, case-insensitive).
LIST_NAME_READINGS = ("exact", "casefold", "normalized")


def list_name_key(name: str, reading: str) -> str:
    """The key two list names share when ``reading`` holds them to be the same name."""
    if reading == "exact":
        return name
    if reading == "normalized":
        return " ".join(unicodedata.normalize("NFKC", name).split()).casefold()
    return name.lower()


class Account:
    """Lists, custom fields, contacts, their statuses and list memberships."""

    def __init__(self, list_name_reading: str = "casefold") -> None:
        if list_name_reading not in LIST_NAME_READINGS:
            raise ValueError(f"list_name_reading must be one of {', '.join(LIST_NAME_READINGS)}")
        self.list_name_reading = list_name_reading
        self.lists: dict[str, dict[str, Any]] = {}
        self._list_names: dict[str, str] = {}
        self.custom_fields: dict[str, dict[str, Any]] = {}
        self.custom_field_names: dict[str, str] = {}
        self.contacts: dict[str, dict[str, Any]] = {}
        self._contact_keys: list[str] = []
        self._contact_id_prefix = uuid.uuid4().hex[:20]
        self.memberships: dict[str, set[str]] = {}
        #: Per list, its members' contact indexes in order (for paging).
        self.member_order: dict[str, IndexOrder] = {}
        self.unsubscribed: set[str] = set()
        #: When each unsubscribed contact opted out (sandbox time).
        self.opt_out_at: dict[str, float] = {}
        #: When each contact's email status last changed, if after its ``updated_at``.
        self.email_updated_at: dict[str, float] = {}
        self.deleted: set[str] = set()
        self.timeline = Timeline()
        #: Whether list membership changes alone (leaving a list, a removal, an import into a
        #: list of an unchanged contact) move ``updated_at``: undocumented for V3, both modelled.
        self.membership_changes_move_updated_at = True
        #: Whether an account-level unsubscribe also ends the contact's list memberships.
        self.unsubscribe_removes_memberships = False
        #: Whether an unsubscribe moves the contact's ``updated_at`` (else only
        #: ``email_address.updated_at``, as Constant Contact's support describes the service).
        self.unsubscribe_moves_updated_at = True
        #: Whether the contacts listing's date filters include their bound (``updated_after=T``
        #: matching a change at exactly T); the API says "after", the sandbox can do both.
        self.date_filters_inclusive = False

    def now(self) -> float:
        """The sandbox time (see ``Timeline``)."""
        return self.timeline.now()

    def advance_time(self, seconds: float) -> float:
        """Move the sandbox clock on (pending work is applied first, at the old time)."""
        self.drain()
        return self.timeline.advance(seconds)

    def touch(self, keys: Iterable[str], now: float | None = None) -> None:
        """These stored contacts changed now: move their ``updated_at`` and index the change."""
        when = self.now() if now is None else now
        contacts, record = self.contacts, self.timeline.record
        for key in keys:
            contact = contacts[key]
            contact[UPDATED] = when
            record(contact[INDEX], when)
        if self.timeline.needs_compaction(len(contacts)):
            self.timeline.rebuild((c[UPDATED], c[INDEX]) for c in contacts.values())

    def drain(self) -> None:
        """Bring the data up to date before a read: nothing is pending here (see SandboxState)."""

    # -- contact lists -----------------------------------------------------------------------

    def create_list(
        self, name: object, description: str | None = None, favorite: bool = False
    ) -> dict[str, Any]:
        """Create a list; 400 unless ``name`` (as the request gave it) is 1 to 255 characters, 409
        when it exists (as ``list_name_reading`` compares: case-insensitive by default), 400 past
        1,000 lists."""
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= 255:
            raise bad_request("name must be 1 to 255 characters.", "contact_lists.name.invalid")
        if list_name_key(name, self.list_name_reading) in self._list_names:
            raise error_list(409, "conflict", "A contact list with this name already exists.")
        if len(self.lists) >= MAX_LISTS:
            raise bad_request(f"An account can have at most {MAX_LISTS} lists.", "contact_lists.limit")
        now = iso(self.now())
        list_id = str(uuid.uuid4())
        self.lists[list_id] = {
            "list_id": list_id,
            "name": name,
            "description": description or "",
            "favorite": bool(favorite),
            "created_at": now,
            "updated_at": now,
        }
        self._list_names[list_name_key(name, self.list_name_reading)] = list_id
        self.memberships[list_id] = set()
        self.member_order[list_id] = IndexOrder()
        return self.lists[list_id]

    def list_json(self, list_id: str, membership: str | None = None) -> dict[str, Any]:
        """A list as the API returns it; ``membership`` ("all"/"active") adds membership_count."""
        item = self.lists.get(list_id)
        if item is None:
            raise not_found(f"Contact list {list_id[:64]} not found.")
        out = dict(item)
        if membership in ("all", "active"):
            self.drain()
            members = self.memberships[list_id]
            count = len(members)
            if membership == "active" and self.unsubscribed:
                count -= sum(1 for key in self.unsubscribed if key in members)
            out["membership_count"] = count
        return out

    def find_list_ids(self, name: str | None) -> list[str]:
        """Ids of every list, or of the one named ``name`` (as ``list_name_reading`` compares)."""
        if name is None:
            return list(self.lists)
        list_id = self._list_names.get(list_name_key(name, self.list_name_reading))
        return [list_id] if list_id else []

    def check_list_ids(self, list_ids: list[str]) -> None:
        """400 when any id is not a list of this account."""
        for list_id in list_ids:
            if list_id not in self.lists:
                raise bad_request(f"List {list_id[:64]} does not exist.", "list_ids.not_found")

    # -- custom fields -----------------------------------------------------------------------

    def create_custom_field(
        self, name: str, label: str | None = None, type: str = "string"
    ) -> dict[str, Any]:
        """Create a custom field; 409 on a duplicate name, 400 past 100 fields."""
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_]{1,50}", name):
            raise bad_request("The custom field name is invalid.", "custom_fields.name.invalid")
        if type not in ("string", "date"):
            raise bad_request("type must be string or date.", "custom_fields.type.invalid")
        if name in self.custom_field_names:
            raise error_list(409, "conflict", "A custom field with this name already exists.")
        if len(self.custom_fields) >= MAX_CUSTOM_FIELDS:
            raise bad_request(
                f"An account can have at most {MAX_CUSTOM_FIELDS} custom fields.", "custom_fields.limit"
            )
        now = iso(self.now())
        field_id = str(uuid.uuid4())
        self.custom_fields[field_id] = {
            "custom_field_id": field_id,
            "label": label or name,
            "name": name,
            "type": type,
            "created_at": now,
            "updated_at": now,
        }
        self.custom_field_names[name] = field_id
        return self.custom_fields[field_id]

    # -- contacts ----------------------------------------------------------------------------

    def contact_id(self, record: dict[str, Any]) -> str:
        """The UUID-shaped id of a contact (prefix + its index, so ids map back cheaply)."""
        p = self._contact_id_prefix
        return f"{p[:8]}-{p[8:12]}-{p[12:16]}-{p[16:20]}-{record[INDEX]:012x}"

    @property
    def contact_keys(self) -> list[str]:
        """Stored contact keys by contact index (the order the contacts listing follows)."""
        return self._contact_keys

    def contact_key_for_id(self, contact_id: Any) -> str | None:
        """The stored key of a contact id, or None when unknown."""
        if not isinstance(contact_id, str) or len(contact_id) != 36:
            return None
        if contact_id[:23].replace("-", "") != self._contact_id_prefix:
            return None
        try:
            index = int(contact_id[24:], 16)
        except ValueError:
            return None
        return self._contact_keys[index] if index < len(self._contact_keys) else None

    def _add_contact(self, key: str, props: dict[str, Any], now: float) -> None:
        """Store ``props`` itself (no copy) as the record of a new contact."""
        props[INDEX] = len(self._contact_keys)
        props[CREATED] = props[UPDATED] = now
        self.contacts[key] = props
        self._contact_keys.append(key)
        self.timeline.record(props[INDEX], now)

    def mark_unsubscribed(self, emails: list[str]) -> int:
        """These addresses unsubscribed from the account (created if unknown): opt-out date and
        ``email_address.updated_at`` now, ``updated_at`` too unless
        ``unsubscribe_moves_updated_at`` is off; imports will not add them to lists. With
        ``unsubscribe_removes_memberships`` they also leave every list. Returns how many were
        not unsubscribed before."""
        self.drain()
        now = self.now()
        changed: list[str] = []
        for email in emails:
            key = email.lower()
            if key not in self.contacts:
                self._add_contact(key, {"email": email}, now)
            if key not in self.unsubscribed:
                self.unsubscribed.add(key)
                self.opt_out_at[key] = self.email_updated_at[key] = now
                changed.append(key)
        if self.unsubscribe_removes_memberships:
            for list_id in self.memberships:
                left = self._remove_members(list_id, changed)
                if self.membership_changes_move_updated_at and not self.unsubscribe_moves_updated_at:
                    self.touch(left, now)
        if self.unsubscribe_moves_updated_at:
            self.touch(changed, now)
        return len(changed)

    def leave_list(self, list_id: str, emails: list[str]) -> int:
        """These contacts removed themselves from one list (a preference page, or the account
        owner in the web app): the membership ends, the contact stays subscribed. Addresses
        that are not members are skipped. Returns how many left; KeyError for an unknown list."""
        if list_id not in self.lists:
            raise KeyError(f"unknown list id {list_id}")
        self.drain()
        left = self._remove_members(list_id, dict.fromkeys(map(str.lower, emails)))
        if self.membership_changes_move_updated_at:
            self.touch(left)
        return len(left)

    def contact_record(self, email: str) -> dict[str, Any]:
        """The stored record of an address, pending imports applied (KeyError when unknown)."""
        self.drain()
        return self.contacts[email.lower()]

    def contact_lists_of(self, key: str) -> list[str]:
        """Ids of the lists a contact belongs to."""
        return [list_id for list_id, members in self.memberships.items() if key in members]

    def contact_status(self, key: str) -> str:
        """``deleted``, ``unsubscribed`` or ``active``."""
        if key in self.deleted:
            return DELETED
        return UNSUBSCRIBED if key in self.unsubscribed else ACTIVE

    def mark_deleted(self, emails: list[str]) -> None:
        """These addresses were deleted (as in the web app): out of every list, listed only
        with ``status=all`` or ``deleted``; created if unknown. An import revives them."""
        self.drain()
        now = self.now()
        keys: dict[str, None] = {}
        for email in emails:
            key = email.lower()
            if key not in self.contacts:
                self._add_contact(key, {"email": email}, now)
            keys[key] = None
        self.deleted.update(keys)
        for list_id in self.memberships:
            self._remove_members(list_id, keys)
        self.touch(keys, now)

    # -- list memberships --------------------------------------------------------------------

    def _add_members(self, list_id: str, keys: Iterable[str], indexes: list[int] | None = None) -> None:
        """Add stored contacts to a list (members already in it are skipped).

        ``indexes``: the contacts' indexes when the caller knows the keys are distinct and
        none is a member yet (the bulk path of ``add_list_members``)."""
        members = self.memberships[list_id]
        if indexes is None:
            new: Iterable[str] = list(dict.fromkeys(filterfalse(members.__contains__, keys)))
            indexes = list(map(itemgetter(INDEX), map(self.contacts.__getitem__, new)))
        else:
            new = keys
        if indexes:
            members.update(new)
            self.member_order[list_id].add(indexes)

    def _remove_members(self, list_id: str, keys: Iterable[str | None]) -> list[str]:
        """Take contacts out of a list (non-members and None are skipped); returns those taken out."""
        members, order, contacts = self.memberships[list_id], self.member_order[list_id], self.contacts
        removed: list[str] = []
        for key in keys:
            if key in members:
                members.discard(key)
                order.remove(contacts[key][INDEX])
                removed.append(key)
        return removed

    def add_list_members(self, list_id: str, emails: Iterable[str], fields: dict[str, Any]) -> list[str]:
        """Store contacts and add them to a list directly (seeding: no import, no activity).

        New addresses are created with ``fields``; existing ones get the address as given and
        ``fields`` (as an import would), and are revived if deleted. Every address is added,
        unsubscribed or not. Returns the contact ids in the order of ``emails``. KeyError for
        an unknown list, ValueError for an invalid address or an unknown property.
        """
        if list_id not in self.lists:
            raise KeyError(f"unknown list id {list_id}")
        for name, value in fields.items():
            if name in IMPORT_INT_FIELDS:
                continue
            if name not in IMPORT_FIELD_LIMITS and not (
                name.startswith("cf:") and name[3:] in self.custom_field_names
            ):
                raise ValueError(f"unknown contact property {name!r}")
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name} must be a string")
        if "email" in fields:
            raise ValueError("email comes from emails, not from fields")
        emails = list(emails)
        if not all_valid_emails(emails):
            raise ValueError("every address must be a valid email address")
        self.drain()
        keys = list(map(str.lower, emails))
        stored, contact_keys, now = self.contacts, self._contact_keys, self.now()
        p = self._contact_id_prefix
        id_format = f"{p[:8]}-{p[8:12]}-{p[12:16]}-{p[16:20]}-%012x"
        start = len(contact_keys)
        if stored.keys().isdisjoint(keys) and len(set(keys)) == len(keys):  # all new: bulk
            records = [
                {"email": email, **fields, INDEX: index, CREATED: now, UPDATED: now}
                for index, email in enumerate(emails, start)
            ]
            stored.update(zip(keys, records, strict=True))
            contact_keys.extend(keys)
            indexes = list(range(start, len(contact_keys)))
            self.timeline.record_many(indexes, now)
            self._add_members(list_id, keys, indexes)
            return list(map(id_format.__mod__, indexes))
        for key, email in zip(keys, emails, strict=True):
            record = stored.get(key)
            if record is None:
                self._add_contact(key, {"email": email, **fields}, now)
            else:  # as an import would: the address as given, then the fields
                record["email"] = email
                record.update(fields)
                self.touch([key], now)
        if self.deleted:
            self.deleted.difference_update(keys)
        self._add_members(list_id, keys)
        return list(map(id_format.__mod__, map(itemgetter(INDEX), map(stored.__getitem__, keys))))
