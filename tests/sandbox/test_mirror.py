"""What a list mirror needs, over real HTTP: the contacts listing, removal activities, pre-fill."""

from __future__ import annotations

import time
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from airflow_provider_constantcontact.sandbox import ConstantContactSandbox
from tests.sandbox.conftest import post_json

REMOVE_PATH = "/activities/remove_list_memberships"


def read_pages(
    api: requests.Session, sandbox: ConstantContactSandbox, **params: str | int
) -> tuple[list[dict], list[dict]]:
    """Every contact of a listing, following ``_links.next.href`` as is; and the page bodies."""
    bodies: list[dict] = []
    response = api.get(sandbox.api_base_url + "/contacts", params=params, timeout=30)
    while True:
        assert response.status_code == 200, response.text
        bodies.append(response.json())
        href = bodies[-1].get("_links", {}).get("next", {}).get("href")
        if not href:
            return [c for body in bodies for c in body["contacts"]], bodies
        split = urlsplit(href)
        assert split.path == "/v3/contacts"
        assert not split.netloc
        assert set(parse_qs(split.query)) == {"cursor"}  # the cursor carries the whole query
        response = api.get(sandbox.base_url + href, timeout=30)


def emails_of(contacts: list[dict]) -> list[str]:
    return [c["email_address"]["address"] for c in contacts]


def remove(api, v3, contact_ids: list[str], list_ids: list[str]) -> requests.Response:
    return post_json(api, v3(REMOVE_PATH), {"source": {"contact_ids": contact_ids}, "list_ids": list_ids})


def activity(api, v3, activity_id: str) -> dict:
    response = api.get(v3(f"/activities/{activity_id}"), timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


# ------------------------------------------------------------------------ contacts listing


def test_lists_takes_up_to_25_ids(sandbox, api, v3):
    list_ids = [sandbox.create_list(f"L{n}") for n in range(26)]
    sandbox.add_list_members(list_ids[0], ["a@example.com"])
    sandbox.add_list_members(list_ids[24], ["b@example.com", "a@example.com"])

    ok = api.get(v3("/contacts"), params={"lists": ",".join(list_ids[:25])}, timeout=5)
    assert ok.status_code == 200
    assert sorted(emails_of(ok.json()["contacts"])) == ["a@example.com", "b@example.com"]

    too_many = api.get(v3("/contacts"), params={"lists": ",".join(list_ids)}, timeout=5)
    assert too_many.status_code == 400
    body = too_many.json()
    assert isinstance(body, list)
    assert body[0]["error_key"] == "query.invalid"
    assert set(body[0]) == {"error_key", "error_message"}


@pytest.mark.parametrize(("limit", "status"), [(0, 400), (1, 200), (500, 200), (501, 400), ("x", 400)])
def test_limit_boundaries(sandbox, api, v3, limit, status):
    sandbox.add_list_members(sandbox.list_ids["Newsletter"], [f"l{n}@example.com" for n in range(3)])
    response = api.get(v3("/contacts"), params={"limit": limit}, timeout=5)
    assert response.status_code == status
    if status == 400:
        assert response.json()[0]["error_key"] == "query.invalid"
    else:
        assert len(response.json()["contacts"]) == min(limit, 3)


def test_default_limit_is_50(sandbox, api, v3):
    sandbox.add_list_members(sandbox.list_ids["Newsletter"], [f"d{n}@example.com" for n in range(51)])
    body = api.get(v3("/contacts"), timeout=5).json()
    assert len(body["contacts"]) == 50
    assert "next" in body["_links"]


def test_cursor_pages_through_more_than_500_members_without_duplicates_or_gaps(sandbox, api, v3):
    newsletter = sandbox.list_ids["Newsletter"]
    other = sandbox.create_list("Other")
    members = [f"member{n}@example.com" for n in range(1234)]
    sandbox.add_list_members(other, ["outsider@example.com"])
    ids = sandbox.add_list_members(newsletter, members, first_name="Ann")
    sandbox.add_list_members(other, ["outsider2@example.com"])

    contacts, bodies = read_pages(api, sandbox, lists=newsletter, limit=500, include_count="true")

    assert [len(body["contacts"]) for body in bodies] == [500, 500, 234]
    assert all(body["contacts_count"] == 1234 for body in bodies)
    assert emails_of(contacts) == members  # creation order, each once
    assert [c["contact_id"] for c in contacts] == ids
    assert all(c["first_name"] == "Ann" for c in contacts)
    assert contacts[0]["email_address"]["permission_to_send"] == "implicit"


def test_members_present_throughout_paging_appear_exactly_once(sandbox, api, v3):
    """The cursor resumes after the last contact served: changes meanwhile shift nothing."""
    newsletter = sandbox.list_ids["Newsletter"]
    emails = [f"s{n}@example.com" for n in range(30)]
    ids = sandbox.add_list_members(newsletter, emails)
    first = api.get(v3("/contacts"), params={"lists": newsletter, "limit": 10}, timeout=5).json()
    assert emails_of(first["contacts"]) == emails[:10]
    # remove two already served and two not yet served, add a new member
    assert remove(api, v3, [ids[1], ids[2], ids[15], ids[16]], [newsletter]).status_code == 201
    sandbox.add_list_members(newsletter, ["late@example.com"])

    rest, _ = read_pages(
        api, sandbox, cursor=parse_qs(urlsplit(first["_links"]["next"]["href"]).query)["cursor"][0]
    )

    assert emails_of(rest) == [*emails[10:15], *emails[17:], "late@example.com"]


def test_a_page_of_a_big_list_reads_only_that_page(sandbox, api, v3, monkeypatch):
    """O(page) per request: only about ``limit`` contacts are looked at, deep in a big list."""
    newsletter = sandbox.list_ids["Newsletter"]
    sandbox.add_list_members(newsletter, [f"big{n}@example.com" for n in range(120_000)])
    sandbox.mark_unsubscribed(["big7@example.com"])
    looked_at = []
    original = sandbox.state.contact_status
    monkeypatch.setattr(sandbox.state, "contact_status", lambda key: looked_at.append(key) or original(key))

    body = api.get(
        v3("/contacts"), params={"lists": newsletter, "limit": 500, "include_count": "true"}, timeout=30
    )
    assert body.json()["contacts_count"] == 120_000
    for _ in range(3):
        href = body.json()["_links"]["next"]["href"]
        looked_at.clear()
        body = api.get(sandbox.base_url + href, timeout=30)
        assert body.status_code == 200
        assert len(body.json()["contacts"]) == 500
        assert len(looked_at) <= 501


def test_status_filters(sandbox, api, v3):
    newsletter = sandbox.list_ids["Newsletter"]
    sandbox.add_list_members(newsletter, ["act@example.com", "uns@example.com", "del@example.com"])
    sandbox.mark_unsubscribed(["uns@example.com"])
    sandbox.mark_deleted(["del@example.com"])

    def listed(**params: str) -> list[str]:
        contacts, bodies = read_pages(api, sandbox, include_count="true", **params)
        assert bodies[0]["contacts_count"] == len(contacts)
        return sorted(emails_of(contacts))

    assert listed() == ["act@example.com", "uns@example.com"]  # every contact not deleted
    assert listed(status="all") == ["act@example.com", "del@example.com", "uns@example.com"]
    assert listed(status="active") == ["act@example.com"]
    assert listed(status="unsubscribed") == ["uns@example.com"]
    assert listed(status="deleted") == ["del@example.com"]
    assert listed(status="active,deleted") == ["act@example.com", "del@example.com"]
    assert listed(status="temp_hold") == []
    # a deleted contact left every list
    assert listed(lists=newsletter, status="all") == ["act@example.com", "uns@example.com"]
    assert listed(lists=newsletter, status="unsubscribed") == ["uns@example.com"]
    assert listed(email="DEL@example.com") == []
    assert listed(email="DEL@example.com", status="all") == ["del@example.com"]
    assert api.get(v3("/contacts"), params={"status": "gone"}, timeout=5).status_code == 400
    unsubscribed = api.get(v3("/contacts"), params={"email": "uns@example.com"}, timeout=5).json()
    assert unsubscribed["contacts"][0]["email_address"]["permission_to_send"] == "unsubscribed"
    # an import revives a deleted contact
    imported = post_json(
        api,
        v3("/activities/contacts_json_import"),
        {"import_data": [{"email": "del@example.com"}], "list_ids": [newsletter]},
    )
    assert imported.status_code == 201
    assert listed(lists=newsletter) == ["act@example.com", "del@example.com", "uns@example.com"]


def test_several_lists_are_merged_without_repeats_and_list_memberships_included(sandbox, api, v3):
    a, b = sandbox.list_ids["Newsletter"], sandbox.create_list("B")
    sandbox.add_list_members(a, ["x1@example.com", "x2@example.com"])
    sandbox.add_list_members(b, ["x3@example.com", "x1@example.com"])

    contacts, _ = read_pages(api, sandbox, lists=f"{b},{a}", limit=1, include="list_memberships")

    assert emails_of(contacts) == ["x1@example.com", "x2@example.com", "x3@example.com"]
    assert sorted(contacts[0]["list_memberships"]) == sorted([a, b])
    assert contacts[1]["list_memberships"] == [a]


def test_invalid_cursor_is_a_400(api, v3):
    response = api.get(v3("/contacts"), params={"cursor": "bm9wZQ"}, timeout=5)
    assert response.status_code == 400
    assert response.json()[0]["error_key"] == "cursor.invalid"


# ---------------------------------------------------------------------- removal activities


def test_removal_activity_progresses_and_removes_members_when_it_completes(sandbox, api, v3):
    newsletter, other = sandbox.list_ids["Newsletter"], sandbox.create_list("Other")
    emails = [f"r{n}@example.com" for n in range(20)]
    ids = sandbox.add_list_members(newsletter, emails)
    sandbox.add_list_members(other, emails[:2])
    sandbox.processing_rate = 10  # 20 items: about 2 s

    response = remove(api, v3, ids, [newsletter, other])

    assert response.status_code == 201
    created = response.json()
    assert created["state"] == "initialized"
    assert created["status"] == {"items_total_count": 20, "items_completed_count": 0, "list_count": 2}
    assert created["_links"]["self"]["href"] == f"/v3/activities/{created['activity_id']}"
    seen = []
    deadline = time.monotonic() + 20
    while True:
        current = activity(api, v3, created["activity_id"])
        seen.append(current["state"])
        assert "person_count" not in current["status"]
        if current["state"] == "processing":
            done = current["status"]["items_completed_count"]
            assert 0 < done < 20
            assert current["percent_done"] == done * 100 // 20
            assert sandbox.list_member_emails(newsletter) == set(emails)  # not before it completes
        if current["state"] == "completed":
            break
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert "processing" in seen
    assert current["status"] == {"items_total_count": 20, "items_completed_count": 20, "list_count": 2}
    assert current["percent_done"] == 100
    assert current["activity_errors"] == []
    assert sandbox.list_member_emails(newsletter) == set()
    assert sandbox.list_member_emails(other) == set()
    assert read_pages(api, sandbox, lists=newsletter)[0] == []
    # listed like imports, under its state
    listed = api.get(v3("/activities"), params={"state": "completed"}, timeout=5).json()["activities"]
    assert [a for a in listed if a["activity_id"] == created["activity_id"]] == [current]


def test_removal_with_fast_processing_completes_at_the_first_read(sandbox, api, v3):
    newsletter = sandbox.list_ids["Newsletter"]
    ids = sandbox.add_list_members(newsletter, ["k1@example.com", "k2@example.com", "k3@example.com"])
    unknown = str(uuid.uuid4())

    response = remove(api, v3, [ids[0], ids[2], unknown, ids[0]], [newsletter])

    assert response.status_code == 201
    assert response.json()["state"] == "initialized"
    assert sandbox.list_member_emails(newsletter) == {"k2@example.com"}
    done = activity(api, v3, response.json()["activity_id"])
    assert done["state"] == "completed"
    # an id of no contact is an item that removes nothing; a repeated id is one more item
    assert done["status"] == {"items_total_count": 4, "items_completed_count": 4, "list_count": 1}


def test_removal_is_applied_after_the_imports_accepted_before_it(sandbox, api, v3):
    newsletter = sandbox.list_ids["Newsletter"]
    ids = sandbox.add_list_members(newsletter, ["back@example.com"])
    sandbox.app.applier.stop()  # keep the import queued
    try:
        post_json(
            api,
            v3("/activities/contacts_json_import"),
            {
                "import_data": [{"email": "back@example.com"}, {"email": "new@example.com"}],
                "list_ids": [newsletter],
            },
        )
        assert remove(api, v3, ids, [newsletter]).status_code == 201
    finally:
        sandbox.app.applier.start()
    assert sandbox.list_member_emails(newsletter) == {"new@example.com"}


@pytest.mark.parametrize(
    ("body", "error_key"),
    [
        ({"source": {"contact_ids": ["not-a-uuid"]}, "list_ids": ["LIST"]}, "source.invalid"),
        ({"source": {"contact_ids": [None]}, "list_ids": ["LIST"]}, "source.invalid"),
        ({"source": {"contact_ids": []}, "list_ids": ["LIST"]}, "source.invalid"),
        ({"source": {"contact_ids": ["ID"] * 501}, "list_ids": ["LIST"]}, "source.invalid"),
        ({"source": {"list_ids": ["LIST"]}, "list_ids": ["LIST"]}, "source.invalid"),
        ({"source": {"contact_ids": ["ID"]}, "list_ids": []}, "list_ids.invalid"),
        ({"source": {"contact_ids": ["ID"]}, "list_ids": ["LIST"] * 51}, "list_ids.invalid"),
        ({"source": {"contact_ids": ["ID"]}, "list_ids": [str(uuid.uuid4())]}, "list_ids.not_found"),
    ],
    ids=[
        "malformed-id",
        "null-id",
        "no-ids",
        "501-ids",
        "other-source",
        "no-lists",
        "51-lists",
        "unknown-list",
    ],
)
def test_invalid_removals_are_400_and_change_nothing(sandbox, api, v3, body, error_key):
    newsletter = sandbox.list_ids["Newsletter"]
    (contact_id,) = sandbox.add_list_members(newsletter, ["stay@example.com"])
    activities_before = len(sandbox.state.activities)

    def fill(value):
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        return {"LIST": newsletter, "ID": contact_id}.get(value, value)

    response = post_json(api, v3(REMOVE_PATH), fill(body))
    assert response.status_code == 400, response.text
    assert response.json()[0]["error_key"] == error_key
    assert len(sandbox.state.activities) == activities_before
    assert sandbox.list_member_emails(newsletter) == {"stay@example.com"}
    assert remove(api, v3, [contact_id, contact_id], [newsletter, newsletter]).status_code == 201


@pytest.mark.parametrize("end_state", ["failed", "cancelled", "timed_out"])
def test_fail_next_activity_makes_the_next_removal_end_badly_and_remove_nothing(sandbox, api, v3, end_state):
    newsletter = sandbox.list_ids["Newsletter"]
    ids = sandbox.add_list_members(newsletter, ["f1@example.com", "f2@example.com"])
    sandbox.fail_next_activity(["List is locked"], state=end_state, kind="remove_list_memberships")
    sandbox.processing_rate = 100

    # the next import is not the one made to fail
    imported = post_json(
        api,
        v3("/activities/contacts_json_import"),
        {"import_data": [{"email": "f3@example.com"}], "list_ids": [newsletter]},
    ).json()
    failing = remove(api, v3, ids[:1], [newsletter]).json()
    assert failing["state"] == "initialized"
    deadline = time.monotonic() + 10
    while (current := activity(api, v3, failing["activity_id"]))["state"] in ("initialized", "processing"):
        assert time.monotonic() < deadline
        time.sleep(0.05)

    assert current["state"] == end_state
    assert current["activity_errors"] == ["List is locked"]
    assert current["status"] == {"items_total_count": 1, "items_completed_count": 1, "list_count": 1}
    assert current["percent_done"] == 100
    assert activity(api, v3, imported["activity_id"])["state"] == "completed"
    listed = api.get(v3("/activities"), params={"state": end_state}, timeout=5).json()["activities"]
    assert [a["activity_id"] for a in listed] == [failing["activity_id"]]
    assert sandbox.list_member_emails(newsletter) == {"f1@example.com", "f2@example.com", "f3@example.com"}
    # only the next one: the following removal works
    ok = remove(api, v3, ids[:1], [newsletter]).json()
    sandbox.processing_rate = None
    assert activity(api, v3, ok["activity_id"])["state"] == "completed"
    assert sandbox.list_member_emails(newsletter) == {"f2@example.com", "f3@example.com"}


def test_fail_next_activity_rejects_an_unknown_kind(sandbox):
    with pytest.raises(ValueError, match="kind must be one of"):
        sandbox.fail_next_activity(kind="contact_delete")


def test_the_nth_removal_post_answers_500_and_is_not_processed(sandbox, api, v3):
    newsletter = sandbox.list_ids["Newsletter"]
    ids = sandbox.add_list_members(newsletter, [f"n{n}@example.com" for n in range(4)])
    sandbox.fail_next(status=500, path_prefix="/v3" + REMOVE_PATH, after=2)

    statuses = [remove(api, v3, [contact_id], [newsletter]).status_code for contact_id in ids]

    assert statuses == [201, 201, 500, 201]
    assert sandbox.list_member_emails(newsletter) == {"n2@example.com"}
    assert [e.status for e in sandbox.request_log if e.path == "/v3" + REMOVE_PATH] == statuses
    # reads in between are not counted: only requests under the prefix are
    sandbox.drop_next(path_prefix="/v3" + REMOVE_PATH, after=1)
    assert api.get(v3("/contacts"), timeout=5).status_code == 200
    assert remove(api, v3, ids[2:3], [newsletter]).status_code == 201
    with pytest.raises(requests.ConnectionError):
        remove(api, v3, ids[2:3], [newsletter])


# ------------------------------------------------------------------------------- pre-fill


def test_add_list_members_stores_contacts_and_returns_their_ids(sandbox):
    newsletter = sandbox.list_ids["Newsletter"]
    ids = sandbox.add_list_members(
        newsletter, ["Ann@Example.com", "bob@example.com"], first_name="Ann", **{"cf:loyalty_tier": "gold"}
    )
    assert ids == [sandbox.contact_id("ann@example.com"), sandbox.contact_id("bob@example.com")]
    assert sandbox.list_members(newsletter)["Ann@Example.com"] == {
        "first_name": "Ann",
        "cf:loyalty_tier": "gold",
    }
    assert sandbox.list_member_emails(newsletter) == {"Ann@Example.com", "bob@example.com"}

    # known addresses (any case, repeated) are updated and revived, unsubscribed ones added too
    other = sandbox.create_list("Other")
    sandbox.mark_unsubscribed(["bob@example.com"])
    sandbox.mark_deleted(["ann@example.com"])
    again = sandbox.add_list_members(
        other, ["ANN@example.com", "bob@example.com", "bob@example.com"], last_name="Lee"
    )
    assert again == [ids[0], ids[1], ids[1]]
    assert sandbox.list_member_emails(other) == {"ANN@example.com", "bob@example.com"}
    assert sandbox.list_members(other)["bob@example.com"]["last_name"] == "Lee"
    assert sandbox.list_member_emails(newsletter) == {"bob@example.com"}  # deleting left the list

    with pytest.raises(KeyError):
        sandbox.add_list_members(str(uuid.uuid4()), ["x@example.com"])
    with pytest.raises(ValueError, match="valid email"):
        sandbox.add_list_members(newsletter, ["not an email"])
    with pytest.raises(ValueError, match="unknown contact property"):
        sandbox.add_list_members(newsletter, ["x@example.com"], **{"cf:nope": "1"})
    with pytest.raises(KeyError):
        sandbox.list_member_emails(str(uuid.uuid4()))


def test_add_list_members_is_fast(sandbox, api, v3):
    """A million members take a few seconds (benchmark); 200,000 well under that here."""
    newsletter = sandbox.list_ids["Newsletter"]
    emails = [f"fast{n}@example.com" for n in range(200_000)]

    started = time.perf_counter()
    ids = sandbox.add_list_members(newsletter, emails)
    elapsed = time.perf_counter() - started

    assert elapsed < 4, elapsed
    assert len(ids) == len(set(ids)) == 200_000
    counts = api.get(
        v3(f"/contact_lists/{newsletter}"), params={"include_membership_count": "all"}, timeout=5
    )
    assert counts.json()["membership_count"] == 200_000
