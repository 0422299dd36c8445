"""The in-memory account: contact lists, custom fields, contacts, memberships and activities.

Not thread-safe on its own: the sandbox holds one lock around every call.

Imports are applied asynchronously, as the real service processes them: ``accept_import``
queues them (FIFO) and ``apply_next`` (the background applier) or ``drain`` applies them in
order. Everything that reads contacts, memberships or activities drains first, so results do
not depend on how far the applier got.

Removals (``accept_remove``) take effect when their activity completes: at once (after the
imports accepted before them) when ``processing_rate`` is None, else once the simulated
processing time has passed, settled by ``drain`` too.

A list's members are a set of contact keys plus an ``IndexOrder`` of their contact indexes,
so the contacts listing pages through a list in index order, O(page) per request.
"""

from __future__ import annotations

import heapq
import re
import time
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from itertools import filterfalse
from operator import itemgetter
from typing import Any

from airflow_provider_constantcontact.sandbox.activities import (
    CANNOT_ADD,
    CORRECTABLE,
    ERROR,
    REMOVE,
    Activity,
    iso,
)
from airflow_provider_constantcontact.sandbox.constants import (
    IMPORT_FIELD_LIMITS,
    IMPORT_INT_FIELDS,
    MAX_CUSTOM_FIELDS,
    MAX_LISTS,
)
from airflow_provider_constantcontact.sandbox.errors import bad_request, error_list, not_found
from airflow_provider_constantcontact.sandbox.imports import EMAIL_RE, all_valid_emails
from airflow_provider_constantcontact.sandbox.ordering import IndexOrder

#: Internal keys of a stored contact record, next to its import properties. Records are plain
#: dicts of atomic values so the garbage collector untracks them: a million of them must not
#: make every full collection scan a million objects.
INDEX, CREATED, UPDATED = "_index", "_created", "_updated"
#: Contact statuses the sandbox stores (any other status of the API matches no contact).
ACTIVE, UNSUBSCRIBED, DELETED = "active", "unsubscribed", "deleted"
#: What ``GET /v3/contacts`` returns without ``status``: every contact that is not deleted.
DEFAULT_STATUSES = frozenset({ACTIVE, UNSUBSCRIBED})


class PendingImport:
    """An accepted import whose contacts are not (all) applied yet; ``applied`` of them are."""

    __slots__ = ("activity", "applied", "contacts", "list_ids", "outcomes")

    def __init__(self, activity: Activity, contacts: list[dict[str, Any]], list_ids: list[str]) -> None:
        self.activity = activity
        self.contacts = contacts
        self.list_ids = list_ids
        self.applied = 0
        self.outcomes = bytearray()


class PendingRemoval:
    """An accepted removal waiting for its activity to complete; ``keys`` None: unknown id."""

    __slots__ = ("activity", "keys", "list_ids")

    def __init__(self, activity: Activity, keys: list[str | None], list_ids: list[str]) -> None:
        self.activity = activity
        self.keys = keys
        self.list_ids = list_ids


def public_props(record: dict[str, Any]) -> dict[str, Any]:
    """A record's import properties (``email``, ``first_name``, ``cf:<name>``, ...)."""
    return {k: v for k, v in record.items() if k[0] != "_"}


class SandboxState:
    """Everything the emulated account holds."""

    def __init__(self) -> None:
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
        self.deleted: set[str] = set()
        self.activities: dict[str, Activity] = {}
        self.pending: deque[PendingImport] = deque()
        #: Removals accepted but not completed yet, oldest first.
        self.removals: list[PendingRemoval] = []
        self.processing_rate: float | None = None
        #: (end state, activity_errors) for the next import activity, set by ``fail_next_activity``.
        self.fail_next_activity: tuple[str, list[str]] | None = None
        #: The same for the next remove_list_memberships activity.
        self.fail_next_removal: tuple[str, list[str]] | None = None

    # -- contact lists -----------------------------------------------------------------------

    def create_list(
        self, name: str, description: str | None = None, favorite: bool = False
    ) -> dict[str, Any]:
        """Create a list; 409 when the name (case-insensitive) exists, 400 past 1,000 lists."""
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= 255:
            raise bad_request("name must be 1 to 255 characters.", "contact_lists.name.invalid")
        if name.lower() in self._list_names:
            raise error_list(409, "conflict", "A contact list with this name already exists.")
        if len(self.lists) >= MAX_LISTS:
            raise bad_request(f"An account can have at most {MAX_LISTS} lists.", "contact_lists.limit")
        now = iso(time.time())
        list_id = str(uuid.uuid4())
        self.lists[list_id] = {
            "list_id": list_id,
            "name": name,
            "description": description or "",
            "favorite": bool(favorite),
            "created_at": now,
            "updated_at": now,
        }
        self._list_names[name.lower()] = list_id
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
        """Ids of every list, or of the one named ``name`` (case-insensitive)."""
        if name is None:
            return list(self.lists)
        list_id = self._list_names.get(name.lower())
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
        now = iso(time.time())
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

    def mark_unsubscribed(self, emails: list[str]) -> None:
        """These addresses unsubscribed: imports will not add them to lists (created if unknown)."""
        self.drain()
        now = time.time()
        for email in emails:
            key = email.lower()
            self.unsubscribed.add(key)
            if key not in self.contacts:
                self._add_contact(key, {"email": email}, now)

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
        now = time.time()
        for email in emails:
            key = email.lower()
            if key not in self.contacts:
                self._add_contact(key, {"email": email}, now)
            self.deleted.add(key)
            for list_id in self.memberships:
                self._remove_members(list_id, [key])

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

    def _remove_members(self, list_id: str, keys: Iterable[str | None]) -> None:
        """Take contacts out of a list (non-members and None are skipped)."""
        members, order, contacts = self.memberships[list_id], self.member_order[list_id], self.contacts
        for key in keys:
            if key in members:
                members.discard(key)
                order.remove(contacts[key][INDEX])

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
        stored, contact_keys, now = self.contacts, self._contact_keys, time.time()
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
            self._add_members(list_id, keys, indexes)
            return list(map(id_format.__mod__, indexes))
        for key, email in zip(keys, emails, strict=True):
            record = stored.get(key)
            if record is None:
                self._add_contact(key, {"email": email, **fields}, now)
            else:  # as an import would: the address as given, then the fields
                record["email"] = email
                record.update(fields)
                record[UPDATED] = now
        if self.deleted:
            self.deleted.difference_update(keys)
        self._add_members(list_id, keys)
        return list(map(id_format.__mod__, map(itemgetter(INDEX), map(stored.__getitem__, keys))))

    # -- contacts listing --------------------------------------------------------------------

    def _in_lists(self, key: str, lists: list[str]) -> bool:
        return any(key in self.memberships.get(list_id, ()) for list_id in lists)

    def contact_indexes(
        self, lists: list[str], statuses: frozenset[str], email: str | None, after: int
    ) -> Iterator[int]:
        """Indexes above ``after`` of the contacts matching the listing's filters, ascending.

        Lazy and O(items produced) when few contacts are filtered out: the members of the
        lists are walked in index order from ``after`` on (a merge for several lists).
        """
        keys, status_of = self._contact_keys, self.contact_status
        if not statuses:  # only statuses the sandbox never gives a contact (temp_hold, ...)
            return
        if email:
            key = email.lower()
            record = self.contacts.get(key)
            if (
                record is not None
                and record[INDEX] > after
                and status_of(key) in statuses
                and (not lists or self._in_lists(key, lists))
            ):
                yield record[INDEX]
            return
        if statuses <= {UNSUBSCRIBED, DELETED}:  # walk the (small) status sets
            wanted = set()
            if UNSUBSCRIBED in statuses:
                wanted |= self.unsubscribed - self.deleted
            if DELETED in statuses:
                wanted |= self.deleted
            candidates = sorted(self.contacts[key][INDEX] for key in wanted)
            for index in candidates:
                if index > after and (not lists or self._in_lists(keys[index], lists)):
                    yield index
            return
        if not lists:
            source: Iterator[int] = iter(range(after + 1, len(keys)))
        else:
            orders = [self.member_order[list_id] for list_id in dict.fromkeys(lists) if list_id in self.lists]
            if len(orders) == 1:
                source = orders[0].after(after)
            else:
                source = _unique(heapq.merge(*(order.after(after) for order in orders)))
        everyone = statuses >= {ACTIVE, UNSUBSCRIBED, DELETED}
        for index in source:
            if everyone or status_of(keys[index]) in statuses:
                yield index

    def count_contacts(self, lists: list[str], statuses: frozenset[str], email: str | None) -> int:
        """How many contacts the listing's filters match (``include_count=true``)."""
        if not statuses:
            return 0
        if email or statuses <= {UNSUBSCRIBED, DELETED}:
            return sum(1 for _ in self.contact_indexes(lists, statuses, email, -1))
        if lists:
            sets = [self.memberships[list_id] for list_id in dict.fromkeys(lists) if list_id in self.lists]
            union: set[str] | dict[str, Any] = sets[0] if len(sets) == 1 else set().union(*sets)
        else:
            union = self.contacts
        count = len(union)
        for status, keys in ((DELETED, self.deleted), (UNSUBSCRIBED, self.unsubscribed - self.deleted)):
            if status not in statuses:
                count -= sum(1 for key in keys if key in union)
        return count

    # -- activities --------------------------------------------------------------------------

    def add_activity(self, activity: Activity) -> Activity:
        """Store an activity (newest last)."""
        self.activities[activity.activity_id] = activity
        return activity

    def get_activity(self, activity_id: str) -> Activity:
        """An activity brought up to date; 404 when unknown."""
        activity = self.activities.get(activity_id)
        if activity is None:
            raise not_found(f"Activity {activity_id[:64]} not found.")
        self.drain()
        activity.advance(self.processing_rate)
        return activity

    def set_processing_rate(self, rate: float | None) -> None:
        """Change the rate, first accounting for elapsed time at the old one."""
        self.drain()
        for activity in self.activities.values():
            activity.advance(self.processing_rate)
        self.processing_rate = rate

    def accept_import(self, contacts: list[dict[str, Any]], list_ids: list[str]) -> Activity:
        """Queue a validated import; its activity (``initialized``) is answered at once."""
        fail_state, fail_errors = self.fail_next_activity or ("failed", None)
        self.fail_next_activity = None
        activity = self.add_activity(Activity(len(contacts), fail_errors, fail_state=fail_state))
        self.pending.append(PendingImport(activity, contacts, list_ids))
        return activity

    def apply_next(self, limit: int | None = None) -> bool:
        """Apply the oldest pending import, or only its next ``limit`` contacts (the applier
        works in small steps so it can give way to requests); False when none was pending."""
        if not self.pending:
            return False
        job = self.pending[0]
        end = len(job.contacts) if limit is None else min(len(job.contacts), job.applied + limit)
        contacts = job.contacts[job.applied : end] if job.applied or end < len(job.contacts) else job.contacts
        job.outcomes += self._apply(contacts, job.list_ids, job.activity.fail_errors is None)
        job.applied = end
        if end == len(job.contacts):
            self.pending.popleft()
            job.activity.outcomes = bytes(job.outcomes)
        return True

    def drain(self) -> None:
        """Apply every pending import, oldest first, then every removal whose activity has
        completed by now."""
        while self.apply_next():
            pass
        if self.removals:
            self._settle_removals()

    def _settle_removals(self) -> None:
        """Advance the pending removals' activities; apply those completed, drop failed ones."""
        waiting = []
        for job in self.removals:
            job.activity.advance(self.processing_rate)
            state = job.activity.state
            if state == "completed":
                self._apply_removal(job)
            elif state in ("initialized", "processing"):
                waiting.append(job)
        self.removals = waiting

    def _apply_removal(self, job: PendingRemoval) -> None:
        for list_id in dict.fromkeys(job.list_ids):
            self._remove_members(list_id, job.keys)

    def _apply(self, contacts: list[dict[str, Any]], list_ids: list[str], store: bool) -> bytes:
        """Create or update contacts and add them to the lists; return the per-item outcomes.

        Contacts with an invalid email count as correctable, with no email as errors;
        unsubscribed ones are updated but not added to the lists. With ``store`` False (an
        activity made to fail) only the outcomes are computed.
        """
        outcomes = bytearray(len(contacts))
        emails = [props.get("email") for props in contacts]
        keys: list[str | None]
        if all_valid_emails(emails):  # the usual case: no per-contact regex call
            keys = list(map(str.lower, emails))
        else:
            keys = []
            match = EMAIL_RE.match
            for row, (email, props) in enumerate(zip(emails, contacts, strict=True)):
                if email:
                    if match(email):
                        keys.append(email.lower())
                        continue
                    outcomes[row] = CORRECTABLE
                elif props.get("sms_number"):
                    keys.append("sms:" + props["sms_number"])
                    continue
                else:
                    outcomes[row] = ERROR
                keys.append(None)
        unsubscribed = self.unsubscribed
        if unsubscribed and not unsubscribed.isdisjoint(keys):
            for row, key in enumerate(keys):
                if key in unsubscribed:
                    outcomes[row] = CANNOT_ADD
        if not store:
            return bytes(outcomes)
        now = time.time()
        stored = self.contacts
        contact_keys = self._contact_keys
        first_new = len(contact_keys)
        updated: list[str] = []
        for key, props in zip(keys, contacts, strict=True):
            if key is None:
                continue
            contact = stored.get(key)
            if contact is None:
                props[INDEX] = len(contact_keys)
                props[CREATED] = props[UPDATED] = now
                stored[key] = props
                contact_keys.append(key)
            else:
                contact.update(props)
                contact[UPDATED] = now
                updated.append(key)
        if self.deleted and not self.deleted.isdisjoint(updated):
            self.deleted.difference_update(updated)  # an import revives a deleted contact
        # New contacts (distinct, in no list yet, never unsubscribed: mark_unsubscribed stores
        # its addresses) join with their known indexes; updated ones through the general path.
        created = contact_keys[first_new:]
        if unsubscribed and updated:
            updated = [key for key in updated if key not in unsubscribed]
        for list_id in dict.fromkeys(list_ids):
            self._add_members(list_id, created, list(range(first_new, len(contact_keys))))
            if updated:
                self._add_members(list_id, updated)
        return bytes(outcomes)

    def accept_remove(self, contact_ids: list[str], list_ids: list[str]) -> Activity:
        """Accept a removal of contacts (by id) from lists; its activity is answered at once.

        Each id is one item; an id of no contact is processed as an item that removes nothing
        (the real service's status has no error counter). Memberships are removed when the
        activity completes: at once (after the imports accepted before it) when
        ``processing_rate`` is None, else once its processing time has passed (``drain``).
        A removal made to fail (``fail_next_removal``) removes nothing.
        """
        self.drain()
        fail_state, fail_errors = self.fail_next_removal or ("failed", None)
        self.fail_next_removal = None
        activity = self.add_activity(
            Activity(
                len(contact_ids),
                fail_errors,
                bytes(len(contact_ids)),
                fail_state,
                kind=REMOVE,
                list_count=len(dict.fromkeys(list_ids)),
            )
        )
        job = PendingRemoval(activity, list(map(self.contact_key_for_id, contact_ids)), list_ids)
        if fail_errors is None and self.processing_rate is None:
            self._apply_removal(job)
        elif fail_errors is None:
            self.removals.append(job)
        return activity


def _unique(values: Iterable[int]) -> Iterator[int]:
    """Sorted values without repeats (a contact in several of the listed lists)."""
    last = -1
    for value in values:
        if value != last:
            yield value
            last = value
