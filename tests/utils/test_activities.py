"""Import completion logic: one request per poll, summaries, failure checks, the blocking wait."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator

import pytest

from airflow_provider_constantcontact.exceptions import (
    ConstantContactImportError,
    ConstantContactQuotaExceededError,
    ConstantContactServerError,
)
from airflow_provider_constantcontact.hooks.constantcontact import ConstantContactHook
from airflow_provider_constantcontact.utils import activities
from airflow_provider_constantcontact.utils.activities import (
    ActivityPoller,
    check_activities,
    describe_progress,
    fetch_activities,
    next_poll_interval,
    normalize_activity_ids,
    summarize_activities,
    wait_for_activities,
)
from tests.conftest import start_imports


@pytest.fixture(autouse=True)
def _metadata_db(airflow_db):
    """The hook keeps its tokens in an Airflow Variable: give it a migrated DB."""


def make_hook(sandbox) -> ConstantContactHook:
    conn = sandbox.connection_dict()
    from airflow.sdk import Connection

    connection = Connection(
        conn_id="constantcontact_default",
        conn_type=conn["conn_type"],
        login=conn["login"],
        password=conn["password"],
        extra=json.dumps(conn["extra"]),
    )
    return ConstantContactHook(
        connection=connection, backoff_initial=0.01, backoff_max=0.05, backoff_jitter=0
    )


def activity_requests(sandbox, since: int) -> list:
    return [
        entry for entry in sandbox.request_log[since:] if entry.path.rstrip("/").startswith("/v3/activities")
    ]


def activity(activity_id: str, state: str = "completed", **status: int) -> dict:
    return {
        "activity_id": activity_id,
        "state": state,
        "percent_done": 100 if state == "completed" else 40,
        "activity_errors": [],
        "status": {"items_total_count": 10, "items_completed_count": 10, **status},
    }


class FakeHook:
    """Stands in for the hook where the listing must hold what the sandbox cannot easily make."""

    def __init__(self, listing: list[dict], by_id: dict[str, dict] | None = None) -> None:
        self.listing = listing
        self.by_id = by_id or {}
        self.listing_items_read = 0
        self.listing_calls = 0
        self.get_calls: list[str] = []

    def iter_activities(self, *, state: str | None = None, limit: int = 500) -> Iterator[dict]:
        self.listing_calls += 1
        for item in self.listing:
            self.listing_items_read += 1
            yield item

    def get_activity(self, activity_id: str) -> dict:
        self.get_calls.append(activity_id)
        return self.by_id[activity_id]


# ----------------------------------------------------------------------------- against the sandbox
def test_one_listing_request_per_poll_for_many_activities(constantcontact_sandbox):
    hook = make_hook(constantcontact_sandbox)
    ids = start_imports(constantcontact_sandbox, hook, 12, contacts_each=3)
    since = len(constantcontact_sandbox.request_log)

    found = fetch_activities(hook, ids)

    requests_made = activity_requests(constantcontact_sandbox, since)
    assert [(r.method, r.path.rstrip("/")) for r in requests_made] == [("GET", "/v3/activities")]
    assert requests_made[0].query.get("limit") == "500"
    assert list(found) == ids
    assert all(found[i]["activity_id"] == i for i in ids)


def test_poller_stops_asking_for_finished_activities(constantcontact_sandbox):
    hook = make_hook(constantcontact_sandbox)
    ids = start_imports(constantcontact_sandbox, hook, 3, contacts_each=3)
    poller = ActivityPoller(ids)
    deadline = time.monotonic() + 30
    while not (summary := poller.poll(hook))["done"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    since = len(constantcontact_sandbox.request_log)

    assert poller.poll(hook) == summary
    assert activity_requests(constantcontact_sandbox, since) == []
    assert summary["totals"]["items_total_count"] == 9
    assert {entry["state"] for entry in summary["activities"].values()} == {"completed"}


def test_wait_for_activities_polls_once_per_interval_and_logs_progress(constantcontact_sandbox, caplog):
    sandbox = constantcontact_sandbox
    hook = make_hook(sandbox)
    sandbox.processing_rate = 10  # 20 contacts: about 2 s
    ids = start_imports(sandbox, hook, 2, contacts_each=10)
    since = len(sandbox.request_log)

    with caplog.at_level(logging.INFO, logger=activities.__name__):
        summary = wait_for_activities(hook, ids, poll_interval=0.3, timeout=60, max_poll_interval=0.5)

    assert summary["done"] is True
    assert summary["percent_done"] == 100.0
    assert summary["totals"]["items_total_count"] == 20
    polls = activity_requests(sandbox, since)
    assert polls, "no poll was made"
    assert all(r.path.rstrip("/") == "/v3/activities" for r in polls), "fell back to per-id requests"
    # One request per poll: about 2 s of processing at 0.3-0.5 s intervals.
    assert 2 <= len(polls) <= 12
    progress = [r.getMessage() for r in caplog.records if "% done" in r.getMessage()]
    assert len(progress) == len(polls)
    assert "100.0% done" in progress[-1]


def test_wait_for_activities_fails_with_the_activity_errors(constantcontact_sandbox):
    sandbox = constantcontact_sandbox
    hook = make_hook(sandbox)
    sandbox.fail_next_activity(errors=["The file contains an invalid column"])
    ids = start_imports(sandbox, hook, 1, contacts_each=3)

    with pytest.raises(ConstantContactImportError, match="The file contains an invalid column") as err:
        wait_for_activities(hook, ids, poll_interval=0.1, timeout=30)
    assert ids[0] in str(err.value)
    assert "failed" in str(err.value)


def start_removals(
    sandbox, hook: ConstantContactHook, count: int, members_each: int
) -> tuple[list[str], str]:
    """Pre-fill a list, then remove its members with ``count`` removal activities; (ids, list id)."""
    list_id = sandbox.create_list(f"Removals {time.monotonic_ns()}")
    emails = [f"leaver{n}@example.com" for n in range(count * members_each)]
    contact_ids = sandbox.add_list_members(list_id, emails)
    ids = [
        hook.remove_list_memberships(contact_ids[n * members_each : (n + 1) * members_each], [list_id])[
            "activity_id"
        ]
        for n in range(count)
    ]
    return ids, list_id


def test_wait_for_a_mix_of_import_and_removal_activities(constantcontact_sandbox):
    sandbox = constantcontact_sandbox
    hook = make_hook(sandbox)
    sandbox.processing_rate = 10  # 10 contacts and 8 removals: about a second each
    import_ids = start_imports(sandbox, hook, 2, contacts_each=5)
    removal_ids, list_id = start_removals(sandbox, hook, 2, members_each=4)
    since = len(sandbox.request_log)

    summary = wait_for_activities(
        hook, [*import_ids, *removal_ids], poll_interval=0.2, timeout=60, max_error_ratio=0
    )

    assert summary["done"] is True
    assert summary["percent_done"] == 100.0
    assert {entry["state"] for entry in summary["activities"].values()} == {"completed"}
    removal = summary["activities"][removal_ids[0]]["status"]
    assert (removal["items_total_count"], removal["list_count"], removal["person_count"]) == (4, 1, 0)
    totals = summary["totals"]
    assert totals["items_total_count"] == totals["items_completed_count"] == 18
    assert (totals["person_count"], totals["list_count"], totals["error_count"]) == (10, 2, 0)
    assert sandbox.list_member_emails(list_id) == set()
    polls = activity_requests(sandbox, since)
    assert all(r.path.rstrip("/") == "/v3/activities" for r in polls), "fell back to per-id requests"


def test_wait_for_activities_fails_for_a_failed_removal(constantcontact_sandbox):
    sandbox = constantcontact_sandbox
    hook = make_hook(sandbox)
    import_ids = start_imports(sandbox, hook, 1)
    sandbox.fail_next_activity(["Contacts could not be removed"], kind="remove_list_memberships")
    removal_ids, list_id = start_removals(sandbox, hook, 1, members_each=3)

    with pytest.raises(ConstantContactImportError, match="Contacts could not be removed") as err:
        wait_for_activities(hook, [*import_ids, *removal_ids], poll_interval=0.1, timeout=30)
    assert f"activity {removal_ids[0]} ended failed" in str(err.value)
    assert len(sandbox.list_member_emails(list_id)) == 3


def test_wait_for_activities_times_out(constantcontact_sandbox):
    sandbox = constantcontact_sandbox
    hook = make_hook(sandbox)
    sandbox.processing_rate = 0.01
    ids = start_imports(sandbox, hook, 1, contacts_each=3)

    started = time.monotonic()
    with pytest.raises(ConstantContactImportError, match="Timed out"):
        wait_for_activities(hook, ids, poll_interval=0.2, timeout=1)
    assert time.monotonic() - started < 5


def test_wait_for_activities_rides_out_a_transient_error(constantcontact_sandbox, monkeypatch):
    sandbox = constantcontact_sandbox
    hook = make_hook(sandbox)
    ids = start_imports(sandbox, hook, 1, contacts_each=3)
    real_fetch = activities.fetch_activities
    calls = []

    def flaky_fetch(hook, activity_ids):
        calls.append(1)
        if len(calls) == 1:
            raise ConstantContactServerError("Constant Contact kept answering 503", status=503)
        return real_fetch(hook, activity_ids)

    monkeypatch.setattr(activities, "fetch_activities", flaky_fetch)
    summary = wait_for_activities(hook, ids, poll_interval=0.05, timeout=30)
    assert summary["done"]
    assert len(calls) >= 2


def test_wait_for_activities_fails_fast_when_the_quota_is_used_up(constantcontact_sandbox):
    sandbox = constantcontact_sandbox
    hook = make_hook(sandbox)
    ids = start_imports(sandbox, hook, 1, contacts_each=3)
    sandbox.exhaust_daily_quota()
    with pytest.raises(ConstantContactQuotaExceededError):
        wait_for_activities(hook, ids, poll_interval=0.05, timeout=30)


# ----------------------------------------------------------------------------- paging and fallback
def test_falls_back_to_per_id_lookups_only_for_ids_the_listing_lacks():
    listing = [activity(f"listed-{n}") for n in range(30)]
    hook = FakeHook(listing, by_id={"old-1": activity("old-1", "processing")})

    found = fetch_activities(hook, ["listed-3", "old-1", "listed-7"])

    assert hook.listing_calls == 1
    assert hook.get_calls == ["old-1"]
    assert list(found) == ["listed-3", "old-1", "listed-7"]
    assert found["old-1"]["state"] == "processing"


def test_stops_reading_the_listing_once_every_id_is_seen():
    hook = FakeHook([activity(f"a{n}") for n in range(2000)])
    fetch_activities(hook, ["a1", "a2"])
    assert hook.listing_items_read == 3
    assert hook.get_calls == []


def test_pages_no_further_than_the_per_id_lookups_would_cost():
    # 1,500 unrelated activities (3 pages): one missing id costs one page, then one look-up.
    listing = [activity(f"other-{n}") for n in range(1500)]
    hook = FakeHook(listing, by_id={"mine": activity("mine")})
    fetch_activities(hook, ["mine"])
    assert hook.listing_items_read == 500
    assert hook.get_calls == ["mine"]

    # Three missing ids are worth up to three pages before falling back.
    hook = FakeHook(listing, by_id={k: activity(k) for k in ("x", "y", "z")})
    fetch_activities(hook, ["x", "y", "z"])
    assert hook.listing_items_read == 1500
    assert hook.get_calls == ["x", "y", "z"]


def test_terminal_listing_entry_without_counters_is_fetched_by_id_once():
    bare = {"activity_id": "a", "state": "completed", "percent_done": 100}
    hook = FakeHook([bare], by_id={"a": activity("a", person_count=10)})
    found = fetch_activities(hook, ["a"])
    assert hook.get_calls == ["a"]
    assert found["a"]["status"]["person_count"] == 10


def test_counters_of_finished_listing_entries_are_fetched_once_every_activity_finished():
    bare = {"activity_id": "a", "state": "completed", "percent_done": 100}
    hook = FakeHook([bare, activity("b", "processing")], by_id={"a": activity("a", person_count=10)})
    poller = ActivityPoller(["a", "b"])

    for _ in range(3):  # "b" still runs: one listing request per poll, no lookup of "a"
        assert poller.poll(hook)["done"] is False
    assert (hook.listing_calls, hook.get_calls) == (3, [])

    hook.listing[1] = activity("b", person_count=5)
    summary = poller.poll(hook)
    assert summary["done"] is True
    assert hook.get_calls == ["a"]
    assert summary["totals"]["person_count"] == 15

    poller.poll(hook)  # everything is known: nothing more to ask
    assert (hook.listing_calls, hook.get_calls) == (4, ["a"])


@pytest.mark.parametrize(
    ("listing_size", "wanted", "pages"),
    [(2000, ["a1", "a2"], 1), (1500, ["mine"], 1), (1500, ["x", "y", "z"], 3), (0, ["gone"], 1)],
)
def test_debug_log_counts_the_listing_pages_read(caplog, listing_size, wanted, pages):
    listing = [activity(f"a{n}") for n in range(listing_size)]
    hook = FakeHook(listing, by_id={k: activity(k) for k in wanted})
    with caplog.at_level(logging.DEBUG, logger=activities.__name__):
        fetch_activities(hook, wanted)
    assert f"Fetched {len(wanted)} activities with {pages} listing page(s)" in caplog.text


# ----------------------------------------------------------------------------- summaries and checks
def test_summary_is_json_serialisable_with_totals_and_weighted_percent():
    summary = summarize_activities(
        {
            "a": {
                "state": "processing",
                "percent_done": 50,
                "status": {"items_total_count": 300, "items_completed_count": 150, "error_count": 3},
            },
            "b": activity("b", items_total_count=100, items_completed_count=100, error_count=1),
        }
    )
    assert json.loads(json.dumps(summary)) == summary
    assert summary["done"] is False
    assert summary["percent_done"] == 62.5  # (300 * 50 + 100 * 100) / 400
    assert summary["totals"]["items_total_count"] == 400
    assert summary["totals"]["error_count"] == 4
    assert summary["totals"]["cannot_add_to_list_count"] == 0
    assert summary["activities"]["b"]["state"] == "completed"


def test_summary_of_a_removal_activity_without_person_count():
    removal = {
        "activity_id": "r",
        "state": "processing",
        "percent_done": 25,
        "activity_errors": [],
        "status": {"items_total_count": 300, "items_completed_count": 75, "list_count": 2},
    }
    summary = summarize_activities({"r": removal, "i": activity("i", items_total_count=100, person_count=98)})
    assert json.loads(json.dumps(summary)) == summary
    assert summary["activities"]["r"]["status"]["person_count"] == 0
    assert summary["activities"]["r"]["status"]["list_count"] == 2
    assert summary["activities"]["i"]["status"]["list_count"] == 0
    assert summary["totals"]["list_count"] == 2
    assert summary["totals"]["person_count"] == 98
    assert summary["percent_done"] == 43.8  # (300 * 25 + 100 * 100) / 400
    assert summary["done"] is False
    assert "85/400 items" in describe_progress(summary)  # 75 removed + the import's 10


def test_summary_redacts_email_addresses_in_activity_errors():
    record = activity("a", "failed")
    record["activity_errors"] = ["Line 2: jane.doe@example.com is not allowed"]
    summary = summarize_activities({"a": record})
    assert summary["activities"]["a"]["activity_errors"] == ["Line 2: <email> is not allowed"]


@pytest.mark.parametrize("state", ["failed", "cancelled", "timed_out"])
def test_check_raises_for_an_activity_that_ended_badly(state):
    bad = activity("bad", state)
    bad["activity_errors"] = ["Something broke", "and this too"]
    summary = summarize_activities({"ok": activity("ok"), "bad": bad})
    with pytest.raises(ConstantContactImportError, match=f"bad ended {state}: Something broke; and this too"):
        check_activities(summary)


def test_check_fails_a_still_running_import_as_soon_as_one_activity_failed():
    summary = summarize_activities(
        {"running": activity("running", "processing"), "bad": activity("bad", "failed")}
    )
    assert summary["done"] is False
    with pytest.raises(ConstantContactImportError, match="no error details given"):
        check_activities(summary)


def test_max_error_ratio_is_checked_once_done():
    mostly_rejected = activity("a", items_total_count=100, error_count=60, correctable_count=55)
    summary = summarize_activities({"a": mostly_rejected})
    check_activities(summary)  # no threshold: passes
    check_activities(summary, max_error_ratio=0.6)
    with pytest.raises(ConstantContactImportError, match=r"rejected 60 of 100 items \(60.0%\)"):
        check_activities(summary, max_error_ratio=0.5)

    running = summarize_activities({"a": {**mostly_rejected, "state": "processing"}})
    check_activities(running, max_error_ratio=0.1)


def test_max_error_ratio_counts_import_items_only():
    # 20 of 100 imported items rejected; a mirror run's removal of 100 members rejects nothing
    # and must not halve the ratio.
    imported = activity("i", items_total_count=100, error_count=20)
    removal = {**activity("r", items_total_count=100), "status": {"items_total_count": 100, "list_count": 1}}
    summary = summarize_activities({"i": imported, "r": removal})
    assert summary["activities"]["r"]["removal"] is True
    assert summary["activities"]["i"]["removal"] is False
    assert summary["totals"]["items_total_count"] == 200
    check_activities(summary, max_error_ratio=0.2)
    with pytest.raises(ConstantContactImportError, match=r"rejected 20 of 100 items \(20.0%\)"):
        check_activities(summary, max_error_ratio=0.15)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("abc", ["abc"]),
        (["a", "b", "a"], ["a", "b"]),
        ('["a", "b"]', ["a", "b"]),
        ("['a', 'b']", ["a", "b"]),
        ((x for x in ["a"]), ["a"]),
        ({"activity_ids": ["a"]}, ["a"]),
        (None, []),
        ("", []),
        ([], []),
    ],
)
def test_normalize_activity_ids(value, expected):
    assert normalize_activity_ids(value) == expected


def test_normalize_activity_ids_rejects_garbage():
    with pytest.raises(ValueError, match="not a valid list"):
        normalize_activity_ids("[not, a list")
    with pytest.raises(TypeError):
        normalize_activity_ids(42)


def test_poll_interval_backs_off_to_a_cap():
    intervals = [10.0]
    for _ in range(12):
        intervals.append(next_poll_interval(intervals[-1], 10))
    assert intervals[1] == 15
    assert intervals[-1] == 300
    assert all(b >= a for a, b in zip(intervals, intervals[1:], strict=False))
    assert next_poll_interval(5, 5, max_poll_interval=6) == 6
    assert next_poll_interval(600, 600) == 600  # a poll interval above the cap is kept
