"""Imports are answered before they are applied (like the real service), applied in order by a
background applier, and every read that depends on contacts sees them applied."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from airflow_provider_constantcontact.sandbox import ConstantContactSandbox
from tests.sandbox.conftest import api_session, import_body

#: Options of a sandbox a test starts and stops itself.
OPTIONS: dict[str, Any] = {
    "rate_limit": 0,
    "token_rate_limit": 0,
    "lists": ["Newsletter"],
    "custom_fields": ["loyalty_tier"],
}


@pytest.fixture
def paused(sandbox: ConstantContactSandbox) -> ConstantContactSandbox:
    """The default sandbox with its background applier stopped: imports stay queued until a read."""
    sandbox.app.applier.stop()
    return sandbox


def post_import(api: requests.Session, sandbox: ConstantContactSandbox, contacts: list[dict]) -> dict:
    response = api.post(
        sandbox.api_base_url + "/activities/contacts_json_import",
        data=import_body(contacts, [sandbox.list_ids["Newsletter"]]),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_the_import_is_answered_before_it_is_applied(paused, api):
    activity = post_import(api, paused, [{"email": "ann@example.com", "first_name": "Ann"}])
    assert activity["state"] == "initialized"
    assert activity["percent_done"] == 0
    assert activity["status"]["items_total_count"] == 1
    assert activity["status"]["items_completed_count"] == activity["status"]["person_count"] == 0
    # queued, not applied: the raw state has nothing yet
    assert len(paused.state.pending) == 1
    assert paused.state.contacts == {}
    # a read applies it first
    assert paused.list_members(paused.list_ids["Newsletter"]) == {"ann@example.com": {"first_name": "Ann"}}
    assert len(paused.state.pending) == 0


def test_validation_errors_are_still_answered_synchronously(paused, api):
    response = api.post(
        paused.api_base_url + "/activities/contacts_json_import",
        data=import_body([{"email": "a@example.com", "shoe_size": "9"}], [paused.list_ids["Newsletter"]]),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 400
    assert "unknown property" in response.json()[0]["error_message"]
    assert len(paused.state.pending) == 0


def test_the_background_applier_applies_without_any_read(sandbox, api):
    post_import(api, sandbox, [{"email": f"bg{n}@example.com"} for n in range(500)])
    deadline = time.monotonic() + 10
    while sandbox.state.pending and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not sandbox.state.pending
    assert len(sandbox.state.contacts) == 500  # raw state, no drain involved


def _members(sandbox: ConstantContactSandbox, api: requests.Session) -> Any:
    return set(sandbox.list_members(sandbox.list_ids["Newsletter"]))


def _contacts_endpoint(sandbox: ConstantContactSandbox, api: requests.Session) -> Any:
    body = api.get(sandbox.api_base_url + "/contacts", params={"include_count": "true"}, timeout=10).json()
    return body["contacts_count"]


def _membership_count(sandbox: ConstantContactSandbox, api: requests.Session) -> Any:
    list_id = sandbox.list_ids["Newsletter"]
    url = f"{sandbox.api_base_url}/contact_lists/{list_id}"
    return api.get(url, params={"include_membership_count": "all"}, timeout=10).json()["membership_count"]


def _listing_membership_count(sandbox: ConstantContactSandbox, api: requests.Session) -> Any:
    url = sandbox.api_base_url + "/contact_lists"
    body = api.get(url, params={"include_membership_count": "active"}, timeout=10).json()
    return body["lists"][0]["membership_count"]


def _activity_over_http(sandbox: ConstantContactSandbox, api: requests.Session) -> Any:
    activity_id = next(iter(sandbox.state.activities))
    return api.get(f"{sandbox.api_base_url}/activities/{activity_id}", timeout=10).json()["status"]


def _activities_listing(sandbox: ConstantContactSandbox, api: requests.Session) -> Any:
    body = api.get(sandbox.api_base_url + "/activities", params={"state": "completed"}, timeout=10).json()
    return [activity["status"]["person_count"] for activity in body["activities"]]


def _activity_in_python(sandbox: ConstantContactSandbox, api: requests.Session) -> Any:
    return sandbox.get_activity(next(iter(sandbox.state.activities)))["status"]


def _contact_id(sandbox: ConstantContactSandbox, api: requests.Session) -> Any:
    return len(sandbox.contact_id("B@example.com"))


COMPLETED = {
    "items_total_count": 3,
    "items_completed_count": 3,
    "person_count": 2,
    "error_count": 1,
    "correctable_count": 1,
    "cannot_add_to_list_count": 0,
}


@pytest.mark.parametrize(
    ("read", "expected"),
    [
        (_members, {"a@example.com", "B@example.com"}),
        (_contacts_endpoint, 2),
        (_membership_count, 2),
        (_listing_membership_count, 2),
        (_activity_over_http, COMPLETED),
        (_activities_listing, [2]),
        (_activity_in_python, COMPLETED),
        (_contact_id, 36),
    ],
)
def test_every_read_applies_pending_imports_first(
    paused, api, read: Callable[[ConstantContactSandbox, requests.Session], Any], expected: Any
):
    post_import(api, paused, [{"email": "a@example.com"}, {"email": "B@example.com"}, {"email": "nope"}])
    assert paused.state.pending
    assert read(paused, api) == expected
    assert not paused.state.pending


def test_imports_are_applied_in_the_order_they_were_accepted(paused, api):
    list_id = paused.list_ids["Newsletter"]
    for n in range(5):
        post_import(api, paused, [{"email": "same@example.com", "first_name": f"v{n}"}])
    post_import(api, paused, [{"email": "SAME@example.com", "last_name": "Last"}])
    assert len(paused.state.pending) == 6
    # the stored address is the one sent last; the other properties merge in order
    assert paused.list_members(list_id) == {"SAME@example.com": {"first_name": "v4", "last_name": "Last"}}


def test_order_holds_with_the_applier_running(sandbox, api):
    list_id = sandbox.list_ids["Newsletter"]
    for n in range(30):
        contacts = [{"email": f"o{i}@example.com", "first_name": f"v{n}"} for i in range(300)]
        post_import(api, sandbox, contacts)
    members = sandbox.list_members(list_id)
    assert len(members) == 300
    assert {props["first_name"] for props in members.values()} == {"v29"}


def test_unsubscribing_after_an_import_applies_the_import_first(paused, api):
    list_id = paused.list_ids["Newsletter"]
    first = post_import(api, paused, [{"email": "gone@example.com"}])
    paused.mark_unsubscribed(["gone@example.com"])  # the queued import was accepted before this
    assert paused.get_activity(first["activity_id"])["status"]["cannot_add_to_list_count"] == 0
    assert set(paused.list_members(list_id)) == {"gone@example.com"}
    second = post_import(api, paused, [{"email": "gone@example.com", "first_name": "G"}])
    status = paused.get_activity(second["activity_id"])["status"]
    assert (status["person_count"], status["cannot_add_to_list_count"]) == (1, 1)


def test_removing_memberships_applies_pending_imports_first(paused, api):
    list_id = paused.list_ids["Newsletter"]
    post_import(api, paused, [{"email": "a@example.com"}, {"email": "b@example.com"}])
    contact_id = paused.contact_id("a@example.com")
    post_import(api, paused, [{"email": "c@example.com"}])  # queued again
    response = api.post(
        paused.api_base_url + "/activities/remove_list_memberships",
        json={"source": {"contact_ids": [contact_id]}, "list_ids": [list_id]},
        timeout=10,
    )
    assert response.status_code == 201
    assert set(paused.list_members(list_id)) == {"b@example.com", "c@example.com"}


def test_processing_time_counts_from_acceptance_and_completion_waits_for_it(paused, api):
    paused.processing_rate = 50  # contacts a second
    activity = post_import(api, paused, [{"email": f"r{n}@example.com"} for n in range(30)])
    time.sleep(0.3)
    during = paused.get_activity(activity["activity_id"])  # applies, then ~15 of 30 processed
    assert during["state"] == "processing"
    assert 5 <= during["status"]["items_completed_count"] < 30
    time.sleep(0.5)
    done = paused.get_activity(activity["activity_id"])
    assert done["state"] == "completed"
    assert done["status"]["person_count"] == 30


def test_a_failing_activity_stays_the_next_accepted_one(paused, api):
    ok = post_import(api, paused, [{"email": "ok@example.com"}])
    paused.fail_next_activity(errors=["broken"])
    failed = post_import(api, paused, [{"email": "f@example.com"}])
    after = post_import(api, paused, [{"email": "after@example.com"}])
    assert paused.get_activity(ok["activity_id"])["state"] == "completed"
    assert paused.get_activity(failed["activity_id"])["state"] == "failed"
    assert paused.get_activity(after["activity_id"])["state"] == "completed"
    assert set(paused.list_members(paused.list_ids["Newsletter"])) == {"ok@example.com", "after@example.com"}


def test_counters_are_final_only_once_applied(paused, api):
    paused.mark_unsubscribed(["u@example.com"])
    contacts = [
        {"email": "x@example.com"},
        {"email": "bad"},
        {"first_name": "none"},
        {"email": "u@example.com"},
    ]
    activity = post_import(api, paused, contacts)
    assert activity["status"]["person_count"] == 0
    activity_id = activity["activity_id"]
    assert paused.get_activity(activity_id)["status"] == {
        "items_total_count": 4,
        "items_completed_count": 4,
        "person_count": 2,
        "error_count": 2,
        "correctable_count": 1,
        "cannot_add_to_list_count": 1,
    }


def test_stop_with_pending_imports_stops_the_applier_and_keeps_them():
    sandbox = ConstantContactSandbox(**OPTIONS).start()
    try:
        sandbox.app.applier.stop()
        api = api_session(sandbox)
        list_id = sandbox.list_ids["Newsletter"]
        for batch in range(4):
            contacts = [{"email": f"s{batch}-{n}@example.com"} for n in range(5000)]
            post_import(api, sandbox, contacts)
        api.close()
        sandbox.app.applier.start()  # it starts on the queue once idle; stop() must not hang
    finally:
        started = time.monotonic()
        sandbox.stop()
    assert time.monotonic() - started < 5
    assert not any(t.name.startswith("cc-sandbox") for t in threading.enumerate())
    # whatever was still queued is applied by the next read, even after stop()
    assert len(sandbox.list_members(list_id)) == 20_000


def test_restart_restarts_the_applier():
    sandbox = ConstantContactSandbox(**OPTIONS)
    for _ in range(2):
        sandbox.start()
        try:
            assert any(t.name == "cc-sandbox-applier" for t in threading.enumerate())
            api = api_session(sandbox)
            post_import(api, sandbox, [{"email": "again@example.com"}])
            api.close()
        finally:
            sandbox.stop()
        assert not any(t.name.startswith("cc-sandbox") for t in threading.enumerate())
    assert set(sandbox.list_members(sandbox.list_ids["Newsletter"])) == {"again@example.com"}


def test_an_import_applied_in_steps_completes_only_with_its_last_step(paused, api):
    activity = post_import(api, paused, [{"email": f"step{n}@example.com"} for n in range(5000)])
    with paused.lock:
        assert paused.state.apply_next(2000)  # one step of the applier
        assert paused.state.activities[activity["activity_id"]].outcomes is None
        assert len(paused.state.contacts) == 2000
    during = paused.state.activities[activity["activity_id"]].to_json()
    assert (during["state"], during["status"]["items_completed_count"]) == ("initialized", 0)
    done = paused.get_activity(activity["activity_id"])  # applies the remaining 3,000
    assert done["state"] == "completed"
    assert done["status"]["person_count"] == 5000
    assert len(paused.list_members(paused.list_ids["Newsletter"])) == 5000
