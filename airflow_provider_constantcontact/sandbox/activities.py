"""Bulk activities whose progress is computed lazily from elapsed time and a processing rate."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

#: Per-item outcome codes stored in ``Activity.outcomes`` (one byte per item).
OK = 0  # contact created or updated (and added to or removed from the lists)
CORRECTABLE = 1  # not imported: invalid email format
ERROR = 2  # not imported or not found for another reason (no email, unknown contact id)
CANNOT_ADD = 3  # contact updated but previously unsubscribed: not added to the lists

#: Kinds of activity (the endpoint that created it); they differ in their ``status`` counters.
IMPORT = "contacts_json_import"
REMOVE = "remove_list_memberships"
ACTIVITY_KINDS = (IMPORT, REMOVE)


@lru_cache(maxsize=4096)
def iso(ts: float) -> str:
    """An API timestamp (UTC, ISO 8601 with a Z); cached, as the contacts of one import or seeding
    share their timestamps and a listing page formats each of them several times."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Activity:
    """One bulk activity; ``advance`` moves it forward at ``rate`` items a second (None: at once).

    ``outcomes`` is None until the activity's items have been applied to the account: until
    then it stays ``initialized`` (its simulated processing time still counts from creation).
    With ``fail_errors`` set it ends in ``fail_state`` (failed, cancelled or timed_out) instead
    of ``completed``. ``kind`` is ``IMPORT`` or ``REMOVE``: a removal's ``status`` holds
    ``items_total_count``, ``items_completed_count`` and ``list_count`` only (no
    ``person_count`` or error counters), as the real service's does. ``clock`` gives its
    timestamps (the sandbox clock).
    """

    __slots__ = (
        "activity_id",
        "clock",
        "created_at",
        "fail_errors",
        "fail_state",
        "kind",
        "list_count",
        "outcomes",
        "progress",
        "total",
        "updated",
        "updated_at",
    )

    def __init__(
        self,
        total: int,
        fail_errors: list[str] | None = None,
        outcomes: bytes | None = None,
        fail_state: str = "failed",
        *,
        kind: str = IMPORT,
        list_count: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.activity_id = str(uuid.uuid4())
        self.total = total
        self.outcomes = outcomes
        self.fail_errors = fail_errors
        self.fail_state = fail_state
        self.kind = kind
        self.list_count = list_count
        self.clock = clock
        self.created_at = self.updated_at = clock()
        self.progress = 0.0
        self.updated = time.monotonic()

    @property
    def done(self) -> int:
        """Items processed so far."""
        return min(self.total, int(self.progress))

    @property
    def state(self) -> str:
        """initialized (nothing processed yet), processing, then completed or ``fail_state``."""
        done = self.done
        if done >= self.total and (self.progress > 0 or self.total == 0):
            return self.fail_state if self.fail_errors is not None else "completed"
        return "processing" if done > 0 else "initialized"

    def advance(self, rate: float | None) -> None:
        """Account for the time since the last call at ``rate`` items/s (None or <= 0: finish now).

        Does nothing before the items are applied.
        """
        if self.outcomes is None:
            return
        now = time.monotonic()
        before = self.done
        if rate is None or rate <= 0:
            self.progress = max(float(self.total), 1e-9)
        else:
            self.progress = min(float(self.total), self.progress + (now - self.updated) * rate)
        self.updated = now
        if self.done != before:
            self.updated_at = self.clock()

    def to_json(self) -> dict[str, Any]:
        """The activity as ``GET /v3/activities/{id}`` returns it."""
        state, done, total = self.state, self.done, self.total
        failed = state == self.fail_state and self.fail_errors is not None
        if self.kind == REMOVE:
            done = total if failed else done
            status = {"items_total_count": total, "items_completed_count": done}
            status["list_count"] = self.list_count
            percent = 100 if failed or state == "completed" else (done * 100) // total if total else 0
            errors = list(self.fail_errors or []) if failed else []
        elif failed:
            status = dict.fromkeys(("person_count", "correctable_count", "cannot_add_to_list_count"), 0)
            status.update(items_total_count=total, items_completed_count=total, error_count=total)
            percent, errors = 100, list(self.fail_errors or [])
        else:
            seen = (self.outcomes or b"")[:done]
            correctable, error, cannot_add = (
                seen.count(CORRECTABLE),
                seen.count(ERROR),
                seen.count(CANNOT_ADD),
            )
            status = {
                "items_total_count": total,
                "items_completed_count": done,
                "person_count": done - correctable - error,
                "error_count": correctable + error,
                "correctable_count": correctable,
                "cannot_add_to_list_count": cannot_add,
            }
            percent = 100 if state == "completed" else (done * 100) // total if total else 0
            errors = []
        return {
            "activity_id": self.activity_id,
            "state": state,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "percent_done": percent,
            "activity_errors": errors,
            "status": status,
            "_links": {"self": {"href": f"/v3/activities/{self.activity_id}"}},
        }
