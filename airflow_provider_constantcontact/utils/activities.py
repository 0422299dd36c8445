"""Import completion logic shared by the export operator, the import sensor and the trigger.

Constant Contact processes a bulk import asynchronously as an *activity*. Waiting for many
activities must not burn the application's 10,000 requests a day, so one poll costs one request:
the activities listing (``GET /v3/activities?limit=500``, newest first) reports on every recent
activity at once. Only ids the listing does not return are looked up one by one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypedDict

from airflow_provider_constantcontact.constants import (
    FAILED_ACTIVITY_STATES,
    MAX_PAGE_SIZE,
    TERMINAL_ACTIVITY_STATES,
)
from airflow_provider_constantcontact.exceptions import (
    ConstantContactImportError,
    ConstantContactQuotaExceededError,
    ConstantContactRateLimitError,
    ConstantContactServerError,
)
from airflow_provider_constantcontact.utils.redaction import redact_emails
from airflow_provider_constantcontact.utils.templated import parse_list, parse_mapping

if TYPE_CHECKING:
    from airflow_provider_constantcontact.hooks.constantcontact import ConstantContactHook

log = logging.getLogger(__name__)

TERMINAL_STATES = TERMINAL_ACTIVITY_STATES
FAILED_STATES = FAILED_ACTIVITY_STATES
STATUS_COUNTERS = (
    "items_total_count",
    "items_completed_count",
    "person_count",
    "error_count",
    "correctable_count",
    "cannot_add_to_list_count",
    # remove_list_memberships activities: their status has items_total_count,
    # items_completed_count and list_count only (a counter missing from a status counts 0)
    "list_count",
)
#: One listing request reports on up to this many activities (the API's largest page).
LISTING_PAGE_SIZE = MAX_PAGE_SIZE
# Waiting backs off from the poll interval to this cap (or the poll interval when larger):
# 12 requests an hour per waiting task at most, once an import is known to be slow.
DEFAULT_MAX_POLL_INTERVAL = 300.0
BACKOFF_FACTOR = 1.5


class ActivityEntry(TypedDict):
    """One activity in a summary: what the poll saw, with Constant Contact's text redacted."""

    state: str
    percent_done: float
    #: Every name of ``STATUS_COUNTERS``; 0 for a counter the service left out.
    status: dict[str, int]
    #: A remove_list_memberships activity (its status counts lists, never persons or errors).
    removal: bool
    activity_errors: list[str]


class ActivitiesSummary(TypedDict):
    """A poll's view of a set of activities: for logs, XCom (the sensor) and trigger events."""

    activities: dict[str, ActivityEntry]
    #: ``STATUS_COUNTERS`` summed over every activity.
    totals: dict[str, int]
    #: Every activity is in a terminal state.
    done: bool
    percent_done: float


def normalize_activity_ids(value: Any) -> list[str]:
    """Turn one id, a list of ids, or a (JSON or Python literal) string list into a list of ids.

    Accepts what a templated field renders to, read by the one parser of templated values
    (:mod:`~airflow_provider_constantcontact.utils.templated`): an ``XComArg`` resolves to a
    list, a Jinja expression to a string such as ``'["a", "b"]'``, ``"['a', 'b']"`` or a rendered
    export summary (``"{'activity_ids': [...], ...}"``); lists of such lists (mapped exports) are
    flattened. Duplicates are dropped, order is kept; ``None``, ``"None"`` or ``""`` means no activity.
    """
    if isinstance(value, str) and value.strip().startswith("{"):
        value = parse_mapping(value, "activity_ids")
    if isinstance(value, Mapping):
        if "activity_ids" in value:
            return normalize_activity_ids(value["activity_ids"])
        raise TypeError("activity_ids must be an id, a list of ids, or an export summary with 'activity_ids'")
    ids: list[str] = []
    for item in parse_list(value, "activity_ids"):
        if isinstance(item, str) and not item.strip().startswith(("[", "{")):
            found = [item.strip()] if item.strip() else []
        elif isinstance(item, (str, Mapping, list, tuple)):
            found = normalize_activity_ids(item)
        else:
            raise TypeError(f"activity_ids must be a string or a list of strings, not {type(item).__name__}")
        ids.extend(activity_id for activity_id in found if activity_id not in ids)
    return ids


def is_transient_error(error: BaseException) -> bool:
    """Whether polling may simply try again later (server trouble, throttling, network)."""
    if isinstance(error, ConstantContactQuotaExceededError):
        # Polling more cannot help before the day resets and only delays the failure.
        return False
    # OSError covers requests' RequestException (a subclass of IOError) and socket errors.
    return isinstance(error, (ConstantContactServerError, ConstantContactRateLimitError, OSError))


def fetch_activities(hook: ConstantContactHook, activity_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Fetch the current record of each activity, with one listing request per poll.

    Pages through ``GET /v3/activities`` only until every wanted id is seen, and stops paging
    once it has cost as many requests as looking the missing ids up one by one would; those are
    then fetched with ``GET /v3/activities/{id}``. A finished activity whose listing entry lacks its
    ``status`` counters is also fetched by id, but only once every wanted activity has finished:
    its counters no longer change, so fetching them while others still run would cost a request
    per finished activity at every poll.
    Returns ``{activity_id: activity}`` in the order of ``activity_ids``.
    """
    wanted = list(dict.fromkeys(activity_ids))
    if not wanted:
        return {}
    wanted_set = set(wanted)
    listed: dict[str, dict[str, Any]] = {}
    read = 0
    for activity in hook.iter_activities(limit=LISTING_PAGE_SIZE):
        read += 1
        activity_id = activity.get("activity_id")
        if activity_id in wanted_set and activity_id not in listed:
            listed[activity_id] = activity
        if len(listed) == len(wanted):
            break
        # At the end of a page, another page costs one request, looking the missing ids up one each:
        # stop paging once it has cost as much as the look-ups would, in case they are not listed at all.
        if read % LISTING_PAGE_SIZE == 0 and read // LISTING_PAGE_SIZE >= len(wanted) - len(listed):
            break
    found = {activity_id: listed.get(activity_id) or hook.get_activity(activity_id) for activity_id in wanted}
    if all(activity.get("state") in TERMINAL_STATES for activity in found.values()):
        for activity_id, activity in listed.items():
            if "status" not in activity:
                found[activity_id] = hook.get_activity(activity_id)
    # Pages items were read from (the first request is made even when the listing is empty).
    pages = max(1, -(-read // LISTING_PAGE_SIZE))
    log.debug("Fetched %d activities with %d listing page(s)", len(wanted), pages)
    return found


def _as_int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def summarize_activities(activities: Mapping[str, Mapping[str, Any]]) -> ActivitiesSummary:
    """Condense activity records into a JSON-serialisable summary (for logs, XCom and events).

    ``percent_done`` overall is weighted by each activity's ``items_total_count`` (plain mean while
    an activity does not know its size yet); ``done`` is true when every activity is in a terminal state.
    """
    per_activity: dict[str, ActivityEntry] = {}
    totals = dict.fromkeys(STATUS_COUNTERS, 0)
    for activity_id, activity in activities.items():
        status = activity.get("status") or {}
        counters = {name: _as_int(status.get(name)) for name in STATUS_COUNTERS}
        state = str(activity.get("state") or "unknown")
        percent = float(activity.get("percent_done") or 0)
        if state == "completed":
            percent = 100.0
        per_activity[activity_id] = {
            "state": state,
            "percent_done": percent,
            "status": counters,
            # A remove_list_memberships activity: its status counts lists, never persons or errors.
            "removal": "list_count" in status,
            # Activity errors are Constant Contact's text: keep them, minus any email address.
            "activity_errors": [redact_emails(error) for error in activity.get("activity_errors") or []],
        }
        for name in STATUS_COUNTERS:
            totals[name] += counters[name]
    if per_activity:
        weights = [max(entry["status"]["items_total_count"], 0) for entry in per_activity.values()]
        percents = [entry["percent_done"] for entry in per_activity.values()]
        if all(weights):
            percent_done = sum(w * p for w, p in zip(weights, percents, strict=True)) / sum(weights)
        else:
            percent_done = sum(percents) / len(percents)
    else:
        percent_done = 100.0
    return {
        "activities": per_activity,
        "totals": totals,
        "done": all(entry["state"] in TERMINAL_STATES for entry in per_activity.values()),
        "percent_done": round(percent_done, 1),
    }


def describe_progress(summary: Mapping[str, Any]) -> str:
    """One log line: overall percent done and how many activities are in each state."""
    states: dict[str, int] = {}
    for entry in summary["activities"].values():
        states[entry["state"]] = states.get(entry["state"], 0) + 1
    by_state = ", ".join(f"{count} {state}" for state, count in sorted(states.items())) or "none"
    totals = summary["totals"]
    return (
        f"Constant Contact import {summary['percent_done']:.1f}% done "
        f"({len(summary['activities'])} activities: {by_state}; "
        f"{totals['items_completed_count']}/{totals['items_total_count']} items, "
        f"{totals['error_count']} errors)"
    )


def check_activities(summary: Mapping[str, Any], *, max_error_ratio: float | None = None) -> None:
    """Raise ConstantContactImportError if an activity ended badly or too many items were rejected.

    An activity in ``failed``, ``cancelled`` or ``timed_out`` fails the check at once, with its
    ``activity_errors``. ``max_error_ratio`` (``error_count / items_total_count`` over the import
    activities; removals reject nothing) is checked once every activity has finished, so an
    import that rejected most contacts does not pass silently.
    """
    failures = []
    for activity_id, entry in summary["activities"].items():
        if entry["state"] in FAILED_STATES:
            errors = "; ".join(entry["activity_errors"]) or "no error details given"
            failures.append(f"activity {activity_id} ended {entry['state']}: {errors}")
    if failures:
        raise ConstantContactImportError("Constant Contact import failed: " + " | ".join(failures))
    if max_error_ratio is not None and summary["done"]:
        # Over import activities only: removal items are never rejected and would dilute the ratio.
        imports = [entry["status"] for entry in summary["activities"].values() if not entry.get("removal")]
        total = sum(status["items_total_count"] for status in imports)
        errors = sum(status["error_count"] for status in imports)
        if total:
            ratio = errors / total
            if ratio > max_error_ratio:
                raise ConstantContactImportError(
                    f"Constant Contact rejected {errors} of {total} items "
                    f"({ratio:.1%}), more than max_error_ratio {max_error_ratio:.1%} "
                    f"({sum(status['correctable_count'] for status in imports)} correctable, "
                    "e.g. invalid email format)"
                )


def next_poll_interval(current: float, poll_interval: float, max_poll_interval: float | None = None) -> float:
    """Back the interval off by 1.5x, capped at ``max_poll_interval`` (default 300 s)."""
    cap = max(poll_interval, DEFAULT_MAX_POLL_INTERVAL if max_poll_interval is None else max_poll_interval)
    return min(max(current, poll_interval) * BACKOFF_FACTOR, cap)


def _error_label(error: BaseException) -> str:
    """The error's kind and HTTP status, for a log line: no server text, which might echo data."""
    status = getattr(error, "status", None)
    return f"{type(error).__name__}" + (f" (HTTP {status})" if status else "")


class ActivityPoller:
    """Polls a fixed set of activities, remembering finished ones so they are not asked for again.

    The only state that matters is the ids: a new poller for the same ids (after a triggerer or
    worker restart) re-polls all of them once and carries on. ``step`` is the one poll of every
    wait loop (the blocking wait, the sensor's pokes and the trigger).

    :param activity_ids: the activities to poll.
    :param max_error_ratio: what ``step`` checks, see :func:`check_activities`.
    """

    def __init__(self, activity_ids: Sequence[str], *, max_error_ratio: float | None = None) -> None:
        self.activity_ids = list(dict.fromkeys(activity_ids))
        self.max_error_ratio = max_error_ratio
        #: The summary of the last successful poll (None before the first).
        self.summary: ActivitiesSummary | None = None
        self._records: dict[str, dict[str, Any]] = {}

    @property
    def unfinished(self) -> list[str]:
        """Ids not yet seen in a terminal state."""
        return [
            activity_id
            for activity_id in self.activity_ids
            if self._records.get(activity_id, {}).get("state") not in TERMINAL_STATES
        ]

    @property
    def pending(self) -> list[str]:
        """Ids to fetch at the next poll: the unfinished, and finished ones still lacking counters."""
        unfinished = set(self.unfinished)
        return [
            activity_id
            for activity_id in self.activity_ids
            if activity_id in unfinished or "status" not in self._records[activity_id]
        ]

    def poll(self, hook: ConstantContactHook) -> ActivitiesSummary:
        """Fetch the pending activities (one request in the usual case); return the summary."""
        pending = self.pending
        if pending:
            self._records.update(fetch_activities(hook, pending))
        self.summary = summarize_activities({aid: self._records[aid] for aid in self.activity_ids})
        return self.summary

    def step(self, hook: ConstantContactHook, logger: Any) -> ActivitiesSummary | None:
        """Poll once, log the progress and check it; None after a transient error (poll again later).

        ``logger`` is the caller's (a task's or trigger's ``self.log``, or a ``logging.Logger``).

        A transient error (5xx, throttling, network, once the hook's own retries are spent) is
        logged as a warning and swallowed; any other error (auth, quota, not found) is raised, and
        so is ConstantContactImportError for a failed activity or too many rejected items.
        """
        try:
            summary = self.poll(hook)
        except Exception as error:
            if not is_transient_error(error):
                raise
            logger.warning("Polling Constant Contact activities failed, will retry: %s", _error_label(error))
            return None
        logger.info(describe_progress(summary))
        check_activities(summary, max_error_ratio=self.max_error_ratio)
        return summary


def wait_for_activities(
    hook: ConstantContactHook,
    activity_ids: Sequence[str],
    *,
    poll_interval: float,
    timeout: float,
    max_error_ratio: float | None = None,
    max_poll_interval: float | None = None,
) -> ActivitiesSummary:
    """Block until every activity is finished; return the summary or raise ConstantContactImportError.

    Polls with one request per poll, backing the interval off from ``poll_interval`` up to
    ``max_poll_interval``; logs percent done at each poll. Transient errors (5xx, throttling,
    network) are logged and polling goes on; a failed activity, too many rejected items
    (``max_error_ratio``) or reaching ``timeout`` seconds raise ConstantContactImportError.
    """
    poller = ActivityPoller(normalize_activity_ids(activity_ids), max_error_ratio=max_error_ratio)
    deadline = time.monotonic() + timeout
    interval = poll_interval
    while True:
        summary = poller.step(hook, log)
        if summary is not None and summary["done"]:
            return summary
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ConstantContactImportError(
                f"Timed out after {timeout:.0f}s waiting for Constant Contact import activities "
                f"{', '.join(poller.unfinished)}"
            )
        time.sleep(min(interval, remaining))
        interval = next_poll_interval(interval, poll_interval, max_poll_interval)
