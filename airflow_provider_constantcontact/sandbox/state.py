"""The in-memory account: contact lists, custom fields, contacts, memberships and activities.

Not thread-safe on its own: the sandbox holds one lock around every call.

Imports are applied asynchronously, as the real service processes them: ``accept_import``
queues them (FIFO) and ``apply_next`` (the background applier) or ``drain`` applies them in
order. Everything that reads contacts, memberships or activities drains first, so results do
not depend on how far the applier got.
"""

from __future__ import annotations

import re
import time
import uuid
from collections import deque
from typing import Any

from airflow_provider_constantcontact.sandbox.activities import (
    CANNOT_ADD,
    CORRECTABLE,
    ERROR,
    OK,
    Activity,
    iso,
)
from airflow_provider_constantcontact.sandbox.constants import MAX_CUSTOM_FIELDS, MAX_LISTS
from airflow_provider_constantcontact.sandbox.errors import bad_request, error_list, not_found
from airflow_provider_constantcontact.sandbox.imports import EMAIL_RE, all_valid_emails

#: Internal keys of a stored contact record, next to its import properties. Records are plain
#: dicts of atomic values so the garbage collector untracks them: a million of them must not
#: make every full collection scan a million objects.
INDEX, CREATED, UPDATED = "_index", "_created", "_updated"


class PendingImport:
    """An accepted import whose contacts are not (all) applied yet; ``applied`` of them are."""

    __slots__ = ("activity", "applied", "contacts", "list_ids", "outcomes")

    def __init__(self, activity: Activity, contacts: list[dict[str, Any]], list_ids: list[str]) -> None:
        self.activity = activity
        self.contacts = contacts
        self.list_ids = list_ids
        self.applied = 0
        self.outcomes = bytearray()


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
        self.unsubscribed: set[str] = set()
        self.activities: dict[str, Activity] = {}
        self.pending: deque[PendingImport] = deque()
        self.processing_rate: float | None = None
        #: (end state, activity_errors) for the next import activity, set by ``fail_next_activity``.
        self.fail_next_activity: tuple[str, list[str]] | None = None

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
            if membership == "active" and self.unsubscribed:
                out["membership_count"] = len(members - self.unsubscribed)
            else:
                out["membership_count"] = len(members)
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
        """Apply every pending import, oldest first."""
        while self.apply_next():
            pass

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
        added = keys
        if any(outcomes):
            added = [key for key, outcome in zip(keys, outcomes, strict=True) if outcome == OK]
        for list_id in dict.fromkeys(list_ids):
            self.memberships[list_id].update(added)
        return bytes(outcomes)

    def apply_remove(self, contact_ids: list[Any], list_ids: list[str]) -> Activity:
        """Remove contacts (by id) from lists; unknown ids count as errors."""
        self.drain()
        outcomes = bytearray(len(contact_ids))  # all OK until marked
        for row, contact_id in enumerate(contact_ids):
            key = self.contact_key_for_id(contact_id)
            if key is None:
                outcomes[row] = ERROR
                continue
            for list_id in list_ids:
                self.memberships[list_id].discard(key)
        return self.add_activity(Activity(len(outcomes), outcomes=bytes(outcomes)))
