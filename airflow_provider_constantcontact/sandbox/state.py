"""The in-memory account with its activities: imports queued and applied, removals settled.

Not thread-safe on its own: the sandbox holds one lock around every call.

Imports are applied asynchronously, as the real service processes them: ``accept_import``
queues them (FIFO) and ``apply_next`` (the background applier) or ``drain`` applies them in
order. Everything that reads contacts, memberships or activities drains first, so results do
not depend on how far the applier got.

Removals (``accept_remove``) take effect when their activity completes: at once (after the
imports accepted before them) when ``processing_rate`` is None, else once the simulated
processing time has passed, settled by ``drain`` too.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from airflow_provider_constantcontact.sandbox.account import CREATED, INDEX, UPDATED, Account
from airflow_provider_constantcontact.sandbox.activities import (
    CANNOT_ADD,
    CORRECTABLE,
    ERROR,
    REMOVE,
    Activity,
)
from airflow_provider_constantcontact.sandbox.constants import ACTIVITY_LIFETIME
from airflow_provider_constantcontact.sandbox.errors import not_found
from airflow_provider_constantcontact.sandbox.imports import EMAIL_RE, all_valid_emails


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


class SandboxState(Account):
    """Everything the emulated account holds: its data (``Account``) and its activities."""

    def __init__(self, list_name_reading: str = "casefold") -> None:
        super().__init__(list_name_reading)
        self.activities: dict[str, Activity] = {}
        self.pending: deque[PendingImport] = deque()
        #: Removals accepted but not completed yet, oldest first.
        self.removals: list[PendingRemoval] = []
        self.processing_rate: float | None = None
        #: (end state, activity_errors) for the next import activity, set by ``fail_next_activity``.
        self.fail_next_activity: tuple[str, list[str]] | None = None
        #: The same for the next remove_list_memberships activity.
        self.fail_next_removal: tuple[str, list[str]] | None = None

    # -- activities --------------------------------------------------------------------------

    def add_activity(self, activity: Activity) -> Activity:
        """Store an activity (newest last)."""
        self.activities[activity.activity_id] = activity
        return activity

    def advance_time(self, seconds: float) -> float:
        """Move the sandbox clock on; activity records older than ``ACTIVITY_LIFETIME`` are
        then gone (404, and out of the listing), as the service keeps them 10 days."""
        now = super().advance_time(seconds)
        self.forget_expired_activities()
        return now

    def forget_expired_activities(self) -> None:
        """Drop the activity records older than ``ACTIVITY_LIFETIME`` (sandbox clock)."""
        cutoff = self.now() - ACTIVITY_LIFETIME
        if self.activities and next(iter(self.activities.values())).created_at <= cutoff:
            self.activities = {i: a for i, a in self.activities.items() if a.created_at > cutoff}

    def get_activity(self, activity_id: str) -> Activity:
        """An activity brought up to date; 404 when unknown or expired."""
        self.forget_expired_activities()
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
        activity = self.add_activity(
            Activity(len(contacts), fail_errors, fail_state=fail_state, clock=self.now)
        )
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
            removed = self._remove_members(list_id, job.keys)
            if self.membership_changes_move_updated_at:
                self.touch(removed)

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
        now = self.now()
        stored = self.contacts
        contact_keys = self._contact_keys
        first_new = len(contact_keys)
        updated: list[str] = []
        touched: list[str] = []  # updated ones whose updated_at moves
        every_import_touches = self.membership_changes_move_updated_at
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
                if every_import_touches or any(contact.get(k) != v for k, v in props.items()):
                    touched.append(key)
                contact.update(props)
                updated.append(key)
        self.timeline.record_many(range(first_new, len(contact_keys)), now)
        if self.deleted and not self.deleted.isdisjoint(updated):
            revived = self.deleted.intersection(updated)  # an import revives a deleted contact
            self.deleted.difference_update(revived)
            touched += revived
        self.touch(touched, now)
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
                clock=self.now,
            )
        )
        job = PendingRemoval(activity, list(map(self.contact_key_for_id, contact_ids)), list_ids)
        if fail_errors is None and self.processing_rate is None:
            self._apply_removal(job)
        elif fail_errors is None:
            self.removals.append(job)
        return activity
