"""What an export learns about changes in Constant Contact, over real HTTP: timestamps, contacts
leaving a list or the account, the sandbox clock, activity expiry, the listing's change filters,
membership counts, and the options modelling each undocumented reading."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests

from airflow_provider_constantcontact.sandbox import ConstantContactSandbox
from tests.sandbox.conftest import api_session, import_body, post_json

DAY = 86400


def parse(timestamp: str) -> datetime:
    """An API timestamp (``...Z``) as an aware datetime."""
    assert timestamp.endswith("Z"), timestamp
    return datetime.fromisoformat(timestamp[:-1] + "+00:00")


def stamp(moment: datetime) -> str:
    """A datetime as the API writes it."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def listing(api: requests.Session, sandbox: ConstantContactSandbox, **params: Any) -> list[dict]:
    """Every contact of a listing, following ``_links.next.href`` as is."""
    response = api.get(sandbox.api_base_url + "/contacts", params=params, timeout=30)
    contacts: list[dict] = []
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        contacts += body["contacts"]
        href = body.get("_links", {}).get("next", {}).get("href")
        if not href:
            return contacts
        response = api.get(sandbox.base_url + href, timeout=30)


def emails(contacts: list[dict]) -> set[str]:
    return {c["email_address"]["address"] for c in contacts}


def by_email(api: requests.Session, sandbox: ConstantContactSandbox, email: str, **params: Any) -> dict:
    (contact,) = listing(api, sandbox, email=email, status="all", **params)
    return contact


def import_and_wait(
    api: requests.Session, sandbox: ConstantContactSandbox, contacts: list, list_id: str
) -> None:
    response = api.post(
        sandbox.api_base_url + "/activities/contacts_json_import",
        data=import_body(contacts, [list_id]),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    assert sandbox.get_activity(response.json()["activity_id"])["state"] == "completed"


def control(sandbox: ConstantContactSandbox, path: str, payload: Any) -> requests.Response:
    """A sandbox control call: plain HTTP, no token."""
    return requests.post(sandbox.base_url + path, json=payload, timeout=10)


@pytest.fixture
def factory_api(
    constantcontact_sandbox_factory: Callable[..., ConstantContactSandbox],
) -> Iterator[Callable[..., tuple[ConstantContactSandbox, requests.Session]]]:
    """Start a sandbox with options (limits off, list "VIP") and an API session for it."""
    sessions: list[requests.Session] = []

    def make(**options: Any) -> tuple[ConstantContactSandbox, requests.Session]:
        sandbox = constantcontact_sandbox_factory(rate_limit=0, token_rate_limit=0, lists=["VIP"], **options)
        sessions.append(api_session(sandbox))
        return sandbox, sessions[-1]

    yield make
    for session in sessions:
        session.close()


# ------------------------------------------------------------------------------ timestamps


def test_contacts_carry_created_and_updated_at_and_an_import_moves_updated_at(sandbox, api):
    list_id = sandbox.list_ids["Newsletter"]
    before = sandbox.now()
    import_and_wait(api, sandbox, [{"email": "ann@example.com", "first_name": "Ann"}], list_id)
    first = by_email(api, sandbox, "ann@example.com")
    created, updated = parse(first["created_at"]), parse(first["updated_at"])
    assert created == updated == parse(first["email_address"]["updated_at"])
    assert before - timedelta(seconds=1) <= created <= sandbox.now()

    sandbox.advance_time(3600)
    import_and_wait(api, sandbox, [{"email": "ann@example.com", "first_name": "Annie"}], list_id)
    second = by_email(api, sandbox, "ann@example.com")
    assert parse(second["created_at"]) == created
    assert parse(second["updated_at"]) >= updated + timedelta(hours=1)


# ------------------------------------------------------------------- leaving a list or the account


def test_leave_list_ends_one_membership_and_the_contact_stays_subscribed(sandbox, api):
    vip, news = sandbox.create_list("VIP"), sandbox.list_ids["Newsletter"]
    sandbox.add_list_members(vip, ["ann@example.com", "bob@example.com"])
    sandbox.add_list_members(news, ["ann@example.com"])
    updated = parse(by_email(api, sandbox, "ann@example.com")["updated_at"])
    sandbox.advance_time(60)

    assert sandbox.leave_list(vip, ["ANN@example.com", "nobody@example.com"]) == 1

    assert sandbox.list_member_emails(vip) == {"bob@example.com"}
    ann = by_email(api, sandbox, "ann@example.com", include="list_memberships")
    assert ann["list_memberships"] == [news]
    assert ann["email_address"]["permission_to_send"] == "implicit"
    assert "opt_out_date" not in ann["email_address"]
    assert parse(ann["updated_at"]) >= updated + timedelta(seconds=60)
    with pytest.raises(KeyError):
        sandbox.leave_list("no-such-list", ["ann@example.com"])


def test_an_import_naming_the_list_puts_a_leaver_back(sandbox, api):
    """The behaviour the export must avoid: Constant Contact itself re-adds a list leaver."""
    vip = sandbox.create_list("VIP")
    sandbox.add_list_members(vip, ["ann@example.com"])
    sandbox.leave_list(vip, ["ann@example.com"])
    import_and_wait(api, sandbox, [{"email": "ann@example.com"}], vip)
    assert sandbox.list_member_emails(vip) == {"ann@example.com"}


def test_mark_unsubscribed_sets_the_opt_out_date_and_moves_updated_at(sandbox, api):
    list_id = sandbox.list_ids["Newsletter"]
    sandbox.add_list_members(list_id, ["ann@example.com"])
    sandbox.advance_time(DAY)
    moment = sandbox.now()

    assert sandbox.mark_unsubscribed(["ann@example.com", "new@example.com"]) == 2
    assert sandbox.mark_unsubscribed(["ann@example.com"]) == 0  # already unsubscribed

    ann = by_email(api, sandbox, "ann@example.com")
    address = ann["email_address"]
    assert address["permission_to_send"] == "unsubscribed"
    assert moment <= parse(address["opt_out_date"]) <= sandbox.now()
    assert parse(ann["updated_at"]) == parse(address["opt_out_date"])
    # Unsubscribed members stay members (default reading) and an import does not re-add others.
    assert "ann@example.com" in sandbox.list_member_emails(list_id)
    import_and_wait(api, sandbox, [{"email": "new@example.com"}], list_id)
    assert "new@example.com" not in sandbox.list_member_emails(list_id)


def test_control_calls_over_http_need_no_token_and_are_logged(sandbox, api):
    vip = sandbox.create_list("VIP")
    sandbox.add_list_members(vip, ["ann@example.com", "bob@example.com", "cy@example.com"])
    sandbox.clear_request_log()

    left = control(sandbox, f"/sandbox/lists/{vip}/leave", {"emails": ["ann@example.com"]})
    assert left.status_code == 200
    assert left.json() == {"list_id": vip, "left": 1}
    unsubscribed = control(sandbox, "/sandbox/contacts/unsubscribe", {"emails": ["bob@example.com"]})
    assert unsubscribed.status_code == 200
    assert unsubscribed.json() == {"unsubscribed": 1}
    deleted = control(sandbox, "/sandbox/contacts/delete", {"emails": ["cy@example.com"]})
    assert deleted.status_code == 200
    assert deleted.json() == {"deleted": 1}
    before = parse(requests.get(sandbox.base_url + "/sandbox/clock", timeout=5).json()["now"])
    clock = control(sandbox, "/sandbox/clock", {"advance_seconds": 2 * DAY})
    assert clock.status_code == 200
    assert parse(clock.json()["now"]) >= before + timedelta(days=2)
    assert clock.json()["offset_seconds"] == 2 * DAY

    assert sandbox.list_member_emails(vip) == {"bob@example.com"}
    assert by_email(api, sandbox, "bob@example.com")["email_address"]["permission_to_send"] == "unsubscribed"
    assert sandbox.now() >= before + timedelta(days=2)
    log = [(e.method, e.path, e.status) for e in sandbox.request_log]
    assert log[:5] == [
        ("POST", f"/sandbox/lists/{vip}/leave", 200),
        ("POST", "/sandbox/contacts/unsubscribe", 200),
        ("POST", "/sandbox/contacts/delete", 200),
        ("GET", "/sandbox/clock", 200),
        ("POST", "/sandbox/clock", 200),
    ]


@pytest.mark.parametrize(
    ("path", "payload", "status"),
    [
        ("/sandbox/lists/00000000-0000-0000-0000-000000000000/leave", {"emails": ["a@example.com"]}, 404),
        ("/sandbox/contacts/unsubscribe", {"emails": "a@example.com"}, 400),
        ("/sandbox/contacts/unsubscribe", [], 400),
        ("/sandbox/clock", {"advance_seconds": -1}, 400),
        ("/sandbox/clock", {"advance_seconds": "10"}, 400),
        ("/sandbox/nothing", {}, 404),
    ],
)
def test_control_calls_refuse_bad_requests_in_the_api_error_shape(sandbox, path, payload, status):
    response = control(sandbox, path, payload)
    assert response.status_code == status
    body = response.json()
    assert isinstance(body, list)
    assert set(body[0]) == {"error_key", "error_message"}
    assert "a@example.com" not in response.text


# ------------------------------------------------------------------------- clock and activities


def test_activity_records_expire_after_ten_days(sandbox, api):
    list_id = sandbox.list_ids["Newsletter"]
    old = post_json(
        api,
        sandbox.api_base_url + "/activities/contacts_json_import",
        {"import_data": [{"email": "a@example.com"}], "list_ids": [list_id]},
    ).json()
    sandbox.advance_time(9 * DAY)
    recent = post_json(
        api,
        sandbox.api_base_url + "/activities/contacts_json_import",
        {"import_data": [{"email": "b@example.com"}], "list_ids": [list_id]},
    ).json()
    assert api.get(sandbox.api_base_url + f"/activities/{old['activity_id']}", timeout=5).status_code == 200

    sandbox.advance_time(DAY)

    gone = api.get(sandbox.api_base_url + f"/activities/{old['activity_id']}", timeout=5)
    assert gone.status_code == 404
    assert gone.json()[0]["error_key"] == "not_found"
    kept = api.get(sandbox.api_base_url + f"/activities/{recent['activity_id']}", timeout=5)
    assert kept.status_code == 200
    assert kept.json()["state"] == "completed"
    listed = api.get(sandbox.api_base_url + "/activities", params={"limit": 500}, timeout=5).json()
    assert [a["activity_id"] for a in listed["activities"]] == [recent["activity_id"]]
    # The expired import was applied before the clock moved: its contact is there.
    assert {"a@example.com", "b@example.com"} <= sandbox.list_member_emails(list_id)


def test_activity_records_expire_with_the_wall_clock_too(factory_api, monkeypatch):
    """A long-running sandbox (no ``advance_time``) forgets activities 10 days old as well."""
    sandbox, api = factory_api(access_token_ttl=30 * DAY)
    created = post_json(
        api,
        sandbox.api_base_url + "/activities/contacts_json_import",
        {"import_data": [{"email": "a@example.com"}], "list_ids": [sandbox.list_ids["VIP"]]},
    ).json()
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 10 * DAY)
    gone = api.get(sandbox.api_base_url + f"/activities/{created['activity_id']}", timeout=5)
    assert gone.status_code == 404
    listed = api.get(sandbox.api_base_url + "/activities", timeout=5).json()
    assert listed["activities"] == []


def test_advance_time_refuses_to_go_back(sandbox):
    with pytest.raises(ValueError, match="forward"):
        sandbox.advance_time(-1)


# ------------------------------------------------------------------ GET /v3/contacts filters


def test_updated_after_finds_what_changed_including_contacts_that_left_the_list(sandbox, api):
    vip, news = sandbox.create_list("VIP"), sandbox.list_ids["Newsletter"]
    sandbox.add_list_members(vip, [f"m{n}@example.com" for n in range(20)])
    sandbox.advance_time(DAY)
    since = sandbox.now()
    sandbox.advance_time(60)
    sandbox.leave_list(vip, ["m1@example.com"])
    sandbox.mark_unsubscribed(["m2@example.com"])
    import_and_wait(api, sandbox, [{"email": "m3@example.com", "first_name": "Changed"}], vip)
    import_and_wait(api, sandbox, [{"email": "new@example.com"}], news)

    changed = listing(api, sandbox, updated_after=stamp(since), include="list_memberships", limit=2)
    assert emails(changed) == {"m1@example.com", "m2@example.com", "m3@example.com", "new@example.com"}
    memberships = {c["email_address"]["address"]: c["list_memberships"] for c in changed}
    assert memberships["m1@example.com"] == []  # left VIP: seen only without the lists filter
    assert memberships["m2@example.com"] == [vip]
    in_vip = listing(api, sandbox, updated_after=stamp(since), lists=vip)
    assert emails(in_vip) == {"m2@example.com", "m3@example.com"}
    quiet = api.get(
        sandbox.api_base_url + "/contacts",
        params={"updated_after": stamp(sandbox.now()), "include_count": "true"},
        timeout=5,
    )
    assert quiet.json() == {"contacts": [], "contacts_count": 0}


def test_the_next_link_keeps_every_filter(sandbox, api):
    list_id = sandbox.list_ids["Newsletter"]
    sandbox.add_list_members(list_id, [f"old{n}@example.com" for n in range(5)])
    sandbox.advance_time(DAY)
    since = sandbox.now()
    sandbox.advance_time(1)
    sandbox.add_list_members(list_id, [f"new{n}@example.com" for n in range(5)])

    first = api.get(
        sandbox.api_base_url + "/contacts",
        params={"updated_after": stamp(since), "limit": 2, "include_count": "true"},
        timeout=5,
    ).json()
    assert first["contacts_count"] == 5
    assert set(first["_links"]["next"]["href"].split("?")[1].split("=")[0:1]) == {"cursor"}
    assert emails(listing(api, sandbox, updated_after=stamp(since), limit=2)) == {
        f"new{n}@example.com" for n in range(5)
    }


def test_updated_before_created_after_and_optout_after(sandbox, api):
    list_id = sandbox.list_ids["Newsletter"]
    sandbox.add_list_members(list_id, ["early@example.com"])
    sandbox.advance_time(DAY)
    middle = sandbox.now()
    sandbox.advance_time(DAY)
    sandbox.add_list_members(list_id, ["late@example.com"])
    sandbox.mark_unsubscribed(["early@example.com"])

    assert emails(listing(api, sandbox, updated_before=stamp(middle))) == set()
    assert emails(listing(api, sandbox, created_after=stamp(middle))) == {"late@example.com"}
    assert emails(listing(api, sandbox, created_before=stamp(middle))) == {"early@example.com"}
    assert emails(listing(api, sandbox, optout_after=stamp(middle))) == {"early@example.com"}
    assert emails(listing(api, sandbox, optout_after=stamp(sandbox.now()))) == set()
    assert emails(listing(api, sandbox, optout_before=stamp(middle))) == set()
    tomorrow = (sandbox.now() + timedelta(days=1)).date().isoformat()  # a bare date: midnight UTC
    assert emails(listing(api, sandbox, updated_before=tomorrow)) == {"early@example.com", "late@example.com"}


@pytest.mark.parametrize("name", ["updated_after", "updated_before", "created_after", "optout_after"])
@pytest.mark.parametrize("value", ["yesterday", "2024-13-01", "2024-01-01T25:00:00Z", "1700000000"])
def test_a_malformed_date_is_a_400_in_the_api_error_shape(sandbox, api, name, value):
    response = api.get(sandbox.api_base_url + "/contacts", params={name: value}, timeout=5)
    assert response.status_code == 400
    body = response.json()
    assert isinstance(body, list)
    assert body[0]["error_key"] == "query.invalid"
    assert name in body[0]["error_message"]


def test_deleted_contacts_are_listed_as_changed_only_with_status_all(sandbox, api):
    list_id = sandbox.list_ids["Newsletter"]
    sandbox.add_list_members(list_id, ["gone@example.com", "kept@example.com"])
    since = sandbox.now()
    sandbox.advance_time(1)
    sandbox.mark_deleted(["gone@example.com"])

    assert emails(listing(api, sandbox, updated_after=stamp(since))) == set()
    changed = listing(api, sandbox, updated_after=stamp(since), status="all", include="list_memberships")
    assert emails(changed) == {"gone@example.com"}
    assert changed[0]["list_memberships"] == []


def test_include_combines_list_memberships_with_other_parts(sandbox, api):
    list_id = sandbox.list_ids["Newsletter"]
    import_and_wait(
        api, sandbox, [{"email": "ann@example.com", "cf:loyalty_tier": "gold", "phone": "555"}], list_id
    )
    ann = by_email(api, sandbox, "ann@example.com", include="custom_fields,list_memberships,phone_numbers")
    assert ann["list_memberships"] == [list_id]
    assert ann["custom_fields"] == [
        {"custom_field_id": sandbox.custom_field_ids["loyalty_tier"], "value": "gold"}
    ]
    assert ann["phone_numbers"] == [{"phone_number": "555", "kind": "other"}]


def test_a_quiet_day_query_does_not_walk_the_contacts(sandbox, api, monkeypatch):
    """``updated_after`` answers from the change index: with nothing changed since, not one
    contact is looked at, however many the account holds."""
    list_id = sandbox.list_ids["Newsletter"]
    sandbox.add_list_members(list_id, [f"m{n}@example.com" for n in range(50_000)])
    sandbox.advance_time(DAY)
    sandbox.add_list_members(list_id, ["late@example.com"])
    looked_at: list[str] = []
    real_status = sandbox.state.contact_status
    monkeypatch.setattr(
        sandbox.state, "contact_status", lambda key: looked_at.append(key) or real_status(key)
    )

    quiet = listing(api, sandbox, updated_after=stamp(sandbox.now()), lists=list_id, include_count="true")
    assert quiet == []
    assert looked_at == []
    one_change = listing(api, sandbox, updated_after=stamp(sandbox.now() - timedelta(hours=1)), lists=list_id)
    assert emails(one_change) == {"late@example.com"}
    assert len(looked_at) == 1


# --------------------------------------------------------------------------- membership counts


def test_membership_count_is_exact_for_all_and_active(sandbox, api):
    list_id = sandbox.list_ids["Newsletter"]
    sandbox.add_list_members(list_id, [f"m{n}@example.com" for n in range(10)])
    sandbox.leave_list(list_id, ["m0@example.com"])
    sandbox.mark_unsubscribed(["m1@example.com", "m2@example.com"])
    sandbox.mark_deleted(["m3@example.com"])

    one = api.get(
        sandbox.api_base_url + f"/contact_lists/{list_id}",
        params={"include_membership_count": "all"},
        timeout=5,
    ).json()
    assert one["membership_count"] == 8
    active = api.get(
        sandbox.api_base_url + f"/contact_lists/{list_id}",
        params={"include_membership_count": "active"},
        timeout=5,
    ).json()
    assert active["membership_count"] == 6
    listed = api.get(
        sandbox.api_base_url + "/contact_lists", params={"include_membership_count": "all"}, timeout=5
    ).json()
    assert {item["list_id"]: item["membership_count"] for item in listed["lists"]} == {list_id: 8}
    plain = api.get(sandbox.api_base_url + f"/contact_lists/{list_id}", timeout=5).json()
    assert "membership_count" not in plain


# ------------------------------------------------------------------- options for each reading


def test_membership_changes_need_not_move_updated_at(factory_api):
    sandbox, api = factory_api(membership_changes_move_updated_at=False)
    vip = sandbox.list_ids["VIP"]
    other = sandbox.create_list("Other")
    ids = sandbox.add_list_members(
        vip,
        ["left@example.com", "removed@example.com", "same@example.com", "edited@example.com"],
        first_name="X",
    )
    since = sandbox.now()
    sandbox.advance_time(60)

    sandbox.leave_list(vip, ["left@example.com"])
    removal = post_json(
        api,
        sandbox.api_base_url + "/activities/remove_list_memberships",
        {"source": {"contact_ids": [ids[1]]}, "list_ids": [vip]},
    )
    assert removal.status_code == 201
    import_and_wait(api, sandbox, [{"email": "same@example.com", "first_name": "X"}], other)
    import_and_wait(api, sandbox, [{"email": "edited@example.com", "first_name": "Y"}], other)

    assert sandbox.list_member_emails(vip) == {"same@example.com", "edited@example.com"}
    assert "same@example.com" in sandbox.list_member_emails(other)
    assert emails(listing(api, sandbox, updated_after=stamp(since))) == {"edited@example.com"}


def test_membership_changes_move_updated_at_by_default(factory_api):
    sandbox, api = factory_api()
    vip = sandbox.list_ids["VIP"]
    ids = sandbox.add_list_members(vip, ["left@example.com", "removed@example.com", "same@example.com"])
    since = sandbox.now()
    sandbox.advance_time(60)
    sandbox.leave_list(vip, ["left@example.com"])
    post_json(
        api,
        sandbox.api_base_url + "/activities/remove_list_memberships",
        {"source": {"contact_ids": [ids[1]]}, "list_ids": [vip]},
    )
    import_and_wait(api, sandbox, [{"email": "same@example.com"}], sandbox.create_list("Other"))
    assert emails(listing(api, sandbox, updated_after=stamp(since))) == {
        "left@example.com",
        "removed@example.com",
        "same@example.com",
    }


def test_unsubscribe_can_end_every_membership(factory_api):
    sandbox, api = factory_api(unsubscribe_removes_memberships=True)
    vip = sandbox.list_ids["VIP"]
    sandbox.add_list_members(vip, ["ann@example.com", "bob@example.com"])
    sandbox.mark_unsubscribed(["ann@example.com"])
    assert sandbox.list_member_emails(vip) == {"bob@example.com"}
    counted = api.get(
        sandbox.api_base_url + f"/contact_lists/{vip}", params={"include_membership_count": "all"}, timeout=5
    ).json()
    assert counted["membership_count"] == 1


@pytest.mark.parametrize(("inclusive", "expected"), [(False, set()), (True, {"ann@example.com"})])
def test_date_filters_bound_is_excluded_or_included(factory_api, inclusive, expected):
    sandbox, api = factory_api(date_filters_inclusive=inclusive)
    sandbox.add_list_members(sandbox.list_ids["VIP"], ["ann@example.com"])
    updated = by_email(api, sandbox, "ann@example.com")["updated_at"]
    assert emails(listing(api, sandbox, updated_after=updated)) == expected
    assert emails(listing(api, sandbox, updated_before=updated)) == expected


def test_an_unsubscribe_need_not_move_updated_at(factory_api):
    """The reading Constant Contact's support describes: an opt-out moves only
    ``email_address.updated_at``, so ``updated_after`` misses it and ``optout_after`` finds it."""
    sandbox, api = factory_api(unsubscribe_moves_updated_at=False)
    sandbox.add_list_members(sandbox.list_ids["VIP"], ["ann@example.com"])
    seeded = by_email(api, sandbox, "ann@example.com")["updated_at"]
    since = sandbox.now()
    sandbox.advance_time(60)
    sandbox.mark_unsubscribed(["ann@example.com"])

    ann = by_email(api, sandbox, "ann@example.com")
    assert ann["updated_at"] == seeded
    assert ann["email_address"]["updated_at"] == ann["email_address"]["opt_out_date"]
    assert parse(ann["email_address"]["opt_out_date"]) >= since + timedelta(seconds=60)
    assert emails(listing(api, sandbox, updated_after=stamp(since))) == set()
    assert emails(listing(api, sandbox, optout_after=stamp(since))) == {"ann@example.com"}
