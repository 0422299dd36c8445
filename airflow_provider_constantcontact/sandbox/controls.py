"""What a test does to a running sandbox and reads back: seeding, inspection and faults."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from operator import itemgetter
from typing import Any

from airflow_provider_constantcontact.sandbox.account import public_props
from airflow_provider_constantcontact.sandbox.activities import ACTIVITY_KINDS, IMPORT
from airflow_provider_constantcontact.sandbox.constants import FAILED_ACTIVITY_STATES
from airflow_provider_constantcontact.sandbox.oauth import OAuthServer
from airflow_provider_constantcontact.sandbox.server import App, RequestLogEntry
from airflow_provider_constantcontact.sandbox.state import SandboxState

#: Contacts a second while ``hold_processing`` holds activities: none in any test's lifetime.
HELD_PROCESSING_RATE = 1e-9


class SandboxControls:
    """The seeding, inspection and fault methods of ``ConstantContactSandbox`` (emulator.py),
    which sets these attributes; each call holds ``lock``."""

    lock: threading.RLock
    state: SandboxState
    oauth: OAuthServer
    app: App

    # -- seeding and inspection --------------------------------------------------------------

    def create_list(self, name: str, description: str | None = None, favorite: bool = False) -> str:
        """Create a contact list; returns its id."""
        with self.lock:
            list_id: str = self.state.create_list(name, description, favorite)["list_id"]
            return list_id

    def create_custom_field(self, name: str, label: str | None = None, type: str = "string") -> str:
        """Create a custom field (imported as ``cf:<name>``); returns its id."""
        with self.lock:
            field_id: str = self.state.create_custom_field(name, label, type)["custom_field_id"]
            return field_id

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

    def before_next(
        self,
        action: Callable[[], None],
        path_prefix: str | None = None,
        *,
        method: str | None = None,
        count: int = 1,
        after: int = 0,
    ) -> None:
        """Call ``action()`` before processing each of the next ``count`` requests under
        ``path_prefix`` (default ``/v3``) of ``method`` (default any), once ``after`` have gone
        through; the request is then processed as usual. ``action`` runs in the request's thread,
        outside the sandbox's lock: it may wait (hold a request in flight) or seed the account
        (another client's change landing just before this request)."""
        with self.lock:
            self.app.faults.add(count, None, path_prefix, after, method=method, action=action)

    def hold_processing(self, polls: int = 1) -> None:
        """Activities make no progress until ``polls`` reads of them (``GET /v3/activities...``)
        have been answered; then they go on at the ``processing_rate`` set before this call.

        A waiting task deterministically finds its import still running at its first ``polls``
        polls (a sensor then defers or reschedules), however slow the machine, and the next read
        sees it advance at the usual rate."""
        with self.lock:
            rate = self.state.processing_rate
            self.state.set_processing_rate(HELD_PROCESSING_RATE)

        def release() -> None:
            with self.lock:
                self.state.set_processing_rate(rate)

        self.before_next(release, "/v3/activities", method="GET", after=polls)

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

    # -- what subscribers and time do -------------------------------------------------------

    def mark_unsubscribed(self, emails: Iterable[str]) -> int:
        """These addresses unsubscribe from the account (created if unknown): status
        ``unsubscribed``, an opt-out date and ``updated_at`` now; imports update them but do
        not add them to lists. Returns how many were not unsubscribed before."""
        with self.lock:
            return self.state.mark_unsubscribed(list(emails))

    def leave_list(self, list_id: str, emails: Iterable[str]) -> int:
        """These contacts remove themselves from one list (a preference page, or the marketer
        in the web app): the membership ends, the contact stays subscribed, and ``updated_at``
        moves unless ``membership_changes_move_updated_at`` is off. Non-members are skipped.
        Returns how many left; KeyError for an unknown list."""
        with self.lock:
            return self.state.leave_list(list_id, list(emails))

    def advance_time(self, seconds: float) -> datetime:
        """Move the sandbox clock ``seconds`` on (timestamps, ``updated_after`` filters, and
        activity records, gone after 10 days); returns the new sandbox time."""
        with self.lock:
            return datetime.fromtimestamp(self.state.advance_time(seconds), timezone.utc)

    def now(self) -> datetime:
        """The sandbox time (UTC): the wall clock plus every ``advance_time``."""
        with self.lock:
            return datetime.fromtimestamp(self.state.now(), timezone.utc)

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
