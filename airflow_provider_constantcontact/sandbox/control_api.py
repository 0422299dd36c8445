"""The sandbox's own control routes (``/sandbox/...``, no auth): what subscribers and time do,
over HTTP, so a DAG run in another process (``airflow standalone``, a demo) can be driven.

Not part of the emulated API: nothing under ``/v3`` changes, and the request log records these
calls like any other (tests that count API requests filter on ``/v3``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

from airflow_provider_constantcontact.sandbox.activities import iso
from airflow_provider_constantcontact.sandbox.errors import bad_request, not_found
from airflow_provider_constantcontact.sandbox.routing import Request, dispatch, require_json
from airflow_provider_constantcontact.sandbox.state import SandboxState

CONTROL_PREFIX = "/sandbox"


def _emails(request: Request) -> list[str]:
    """The ``{"emails": [...]}`` body of a request; 400 otherwise (values are never echoed)."""
    body = require_json(request)
    emails = body.get("emails") if isinstance(body, dict) else None
    if not isinstance(emails, list) or not all(isinstance(e, str) and e for e in emails):
        raise bad_request('The body must be {"emails": ["...", ...]}.', "sandbox.emails.invalid")
    return emails


class ControlApi:
    """The ``/sandbox`` routes over a ``SandboxState``; ``lock`` guards the state."""

    def __init__(self, state: SandboxState, lock: threading.RLock) -> None:
        self.state = state
        self.lock = lock
        self._routes: list[tuple[str, re.Pattern[str], Callable[..., tuple[int, Any]]]] = [
            ("POST", re.compile(r"/sandbox/lists/([^/]+)/leave"), self.leave_list),
            ("POST", re.compile(r"/sandbox/contacts/unsubscribe"), self.unsubscribe),
            ("POST", re.compile(r"/sandbox/contacts/delete"), self.delete),
            ("GET", re.compile(r"/sandbox/clock"), self.get_clock),
            ("POST", re.compile(r"/sandbox/clock"), self.advance_clock),
        ]

    def dispatch(self, request: Request) -> tuple[int, Any]:
        """Run the route matching the request; 404/405 otherwise."""
        return dispatch(self._routes, request)

    def leave_list(self, request: Request, list_id: str) -> tuple[int, Any]:
        emails = _emails(request)
        with self.lock:
            try:
                left = self.state.leave_list(list_id, emails)
            except KeyError:
                raise not_found(f"Contact list {list_id[:64]} not found.") from None
        return 200, {"list_id": list_id, "left": left}

    def unsubscribe(self, request: Request) -> tuple[int, Any]:
        emails = _emails(request)
        with self.lock:
            return 200, {"unsubscribed": self.state.mark_unsubscribed(emails)}

    def delete(self, request: Request) -> tuple[int, Any]:
        emails = _emails(request)
        with self.lock:
            self.state.mark_deleted(emails)
        return 200, {"deleted": len({e.lower() for e in emails})}

    def _clock(self, now: float) -> dict[str, Any]:
        return {"now": iso(now), "offset_seconds": self.state.timeline.offset}

    def get_clock(self, request: Request) -> tuple[int, Any]:
        with self.lock:
            return 200, self._clock(self.state.now())

    def advance_clock(self, request: Request) -> tuple[int, Any]:
        body = require_json(request)
        seconds = body.get("advance_seconds") if isinstance(body, dict) else None
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds >= 0:
            raise bad_request('The body must be {"advance_seconds": N} with N >= 0.', "sandbox.clock.invalid")
        with self.lock:
            return 200, self._clock(self.state.advance_time(float(seconds)))
