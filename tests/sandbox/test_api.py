"""API contract: contact lists, custom fields, contacts, activities listing, memberships, errors."""

from __future__ import annotations

import json
import time

import pytest
import requests

from tests.sandbox.conftest import post_json


def follow(api: requests.Session, sandbox, url: str, collection: str, **params) -> tuple[list[dict], int]:
    """Every item of a paginated collection and the number of requests it took."""
    items, pages = [], 0
    response = api.get(url, params=params, timeout=10)
    while True:
        assert response.status_code == 200, response.text
        pages += 1
        body = response.json()
        items += body[collection]
        href = body.get("_links", {}).get("next", {}).get("href")
        if not href:
            return items, pages
        assert href.startswith("/v3/")
        response = api.get(sandbox.base_url + href, timeout=10)


def test_contact_lists_paginate_filter_by_name_and_count_members(sandbox, api, v3):
    for n in range(6):
        sandbox.create_list(f"List {n}")
    lists, pages = follow(api, sandbox, v3("/contact_lists"), "lists", limit=2)
    assert pages == 4
    assert [item["name"] for item in lists] == ["Newsletter"] + [f"List {n}" for n in range(6)]
    assert all({"list_id", "name", "description", "favorite", "created_at"} <= set(item) for item in lists)
    assert "membership_count" not in lists[0]
    named = api.get(
        v3("/contact_lists"), params={"name": "list 3", "include_membership_count": "all"}, timeout=5
    )
    assert [item["name"] for item in named.json()["lists"]] == ["List 3"]
    assert named.json()["lists"][0]["membership_count"] == 0
    none = api.get(v3("/contact_lists"), params={"name": "absent"}, timeout=5).json()
    assert none["lists"] == []
    assert "_links" not in none


def test_create_contact_list_and_duplicate_name_conflict(sandbox, api, v3):
    created = post_json(api, v3("/contact_lists"), {"name": "VIP", "description": "d", "favorite": True})
    assert created.status_code == 201
    body = created.json()
    assert body["name"] == "VIP"
    assert body["favorite"] is True
    assert sandbox.list_ids["VIP"] == body["list_id"]
    fetched = api.get(v3(f"/contact_lists/{body['list_id']}"), timeout=5)
    assert fetched.status_code == 200
    assert fetched.json()["list_id"] == body["list_id"]
    duplicate = post_json(api, v3("/contact_lists"), {"name": "vip"})
    assert duplicate.status_code == 409
    assert duplicate.json()[0]["error_key"] == "conflict"
    assert post_json(api, v3("/contact_lists"), {"description": "no name"}).status_code == 400
    assert post_json(api, v3("/contact_lists"), {"name": "x", "colour": "red"}).status_code == 400


def test_unknown_list_is_404_array(api, v3):
    response = api.get(v3("/contact_lists/8d6c3f1e-0000-4000-8000-000000000000"), timeout=5)
    assert response.status_code == 404
    body = response.json()
    assert isinstance(body, list)
    assert set(body[0]) == {"error_key", "error_message"}


def test_custom_fields_list_paginate_and_create(sandbox, api, v3):
    sandbox.create_custom_field("favourite_colour", label="Favourite colour")
    fields, pages = follow(api, sandbox, v3("/contact_custom_fields"), "custom_fields", limit=1)
    assert pages == 2
    assert [(f["name"], f["label"], f["type"]) for f in fields] == [
        ("loyalty_tier", "loyalty_tier", "string"),
        ("favourite_colour", "Favourite colour", "string"),
    ]
    assert fields[0]["custom_field_id"] == sandbox.custom_field_ids["loyalty_tier"]
    created = post_json(api, v3("/contact_custom_fields"), {"label": "Shoe Size", "type": "string"})
    assert created.status_code == 201
    assert created.json()["name"] == "shoe_size"
    assert post_json(api, v3("/contact_custom_fields"), {"label": "Shoe size"}).status_code == 409
    too_big = api.get(v3("/contact_custom_fields"), params={"limit": 101}, timeout=5)
    assert too_big.status_code == 400


def import_contacts(api, v3, contacts, list_ids):
    response = post_json(
        api, v3("/activities/contacts_json_import"), {"import_data": contacts, "list_ids": list_ids}
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_contacts_listing_by_list_email_and_status_with_pagination(sandbox, api, v3):
    newsletter = sandbox.list_ids["Newsletter"]
    other = sandbox.create_list("Other")
    import_contacts(
        api,
        v3,
        [{"email": f"p{n}@example.com", "first_name": f"P{n}", "cf:loyalty_tier": "gold"} for n in range(5)],
        [newsletter],
    )
    import_contacts(api, v3, [{"email": "o@example.com"}], [other])
    sandbox.mark_unsubscribed(["p4@example.com"])

    in_list, pages = follow(api, sandbox, v3("/contacts"), "contacts", lists=newsletter, limit=2)
    assert pages == 3
    assert sorted(c["email_address"]["address"] for c in in_list) == [f"p{n}@example.com" for n in range(5)]
    assert all(c["contact_id"] for c in in_list)
    active, _ = follow(api, sandbox, v3("/contacts"), "contacts", lists=newsletter, status="active")
    assert len(active) == 4
    unsub, _ = follow(api, sandbox, v3("/contacts"), "contacts", status="unsubscribed")
    assert [c["email_address"]["permission_to_send"] for c in unsub] == ["unsubscribed"]
    both, _ = follow(api, sandbox, v3("/contacts"), "contacts", lists=f"{newsletter},{other}")
    assert len(both) == 6
    everyone = api.get(v3("/contacts"), params={"include_count": "true"}, timeout=5).json()
    assert everyone["contacts_count"] == 6

    one = api.get(
        v3("/contacts"),
        params={"email": "P1@example.com", "include": "custom_fields,list_memberships"},
        timeout=5,
    ).json()["contacts"]
    assert len(one) == 1
    assert one[0]["email_address"]["address"] == "p1@example.com"
    assert one[0]["first_name"] == "P1"
    assert one[0]["list_memberships"] == [newsletter]
    assert one[0]["custom_fields"] == [
        {"custom_field_id": sandbox.custom_field_ids["loyalty_tier"], "value": "gold"}
    ]
    assert one[0]["contact_id"] == sandbox.contact_id("p1@example.com")
    assert (
        api.get(v3("/contacts"), params={"email": "nobody@example.com"}, timeout=5).json()["contacts"] == []
    )
    assert api.get(v3("/contacts"), params={"limit": 501}, timeout=5).status_code == 400


def test_remove_list_memberships_by_contact_ids(sandbox, api, v3):
    newsletter = sandbox.list_ids["Newsletter"]
    import_contacts(api, v3, [{"email": f"r{n}@example.com"} for n in range(3)], [newsletter])
    ids = [sandbox.contact_id("r0@example.com"), sandbox.contact_id("r1@example.com")]
    response = post_json(
        api,
        v3("/activities/remove_list_memberships"),
        {"source": {"contact_ids": [*ids, "00000000-0000-4000-8000-000000000000"]}, "list_ids": [newsletter]},
    )
    assert response.status_code == 201
    activity = response.json()
    assert activity["state"] == "initialized"
    done = api.get(v3(f"/activities/{activity['activity_id']}"), timeout=5).json()
    assert done["state"] == "completed"
    # the real service's removal status: no person_count, no error counters; an id of no
    # contact is an item that removes nothing
    assert done["status"] == {"items_total_count": 3, "items_completed_count": 3, "list_count": 1}
    assert set(sandbox.list_members(newsletter)) == {"r2@example.com"}
    too_many = post_json(
        api,
        v3("/activities/remove_list_memberships"),
        {"source": {"contact_ids": ids * 251}, "list_ids": [newsletter]},
    )
    assert too_many.status_code == 400
    unknown_list = post_json(
        api, v3("/activities/remove_list_memberships"), {"source": {"contact_ids": ids}, "list_ids": ["nope"]}
    )
    assert unknown_list.status_code == 400


def test_activities_listing_filters_by_state_and_paginates(sandbox, api, v3):
    newsletter = sandbox.list_ids["Newsletter"]
    ids = [
        import_contacts(api, v3, [{"email": f"a{n}@example.com"}], [newsletter])["activity_id"]
        for n in range(3)
    ]
    sandbox.processing_rate = 0.001
    slow = import_contacts(api, v3, [{"email": "slow@example.com"}], [newsletter])["activity_id"]
    listed, pages = follow(api, sandbox, v3("/activities"), "activities", limit=2)
    assert pages == 2
    assert [a["activity_id"] for a in listed] == [slow, *reversed(ids)]  # newest first
    completed, _ = follow(api, sandbox, v3("/activities"), "activities", state="completed")
    assert {a["activity_id"] for a in completed} == set(ids)
    assert all(a["status"]["items_completed_count"] == 1 for a in completed)
    initialized, _ = follow(api, sandbox, v3("/activities"), "activities", state="initialized")
    assert [a["activity_id"] for a in initialized] == [slow]
    assert api.get(v3("/activities"), params={"state": "bogus"}, timeout=5).status_code == 400
    assert api.get(v3("/activities"), params={"limit": 501}, timeout=5).status_code == 400
    missing = api.get(v3("/activities/does-not-exist"), timeout=5)
    assert missing.status_code == 404
    assert missing.json()[0]["error_key"] == "not_found"


@pytest.mark.parametrize("rate", [None, 1000.0])
def test_hold_processing_keeps_activities_running_until_polled(sandbox, api, v3, rate):
    newsletter = sandbox.list_ids["Newsletter"]
    sandbox.processing_rate = rate  # None: an import completes at its first read
    sandbox.hold_processing(polls=2)
    activity_id = import_contacts(api, v3, [{"email": "held@example.com"}], [newsletter])["activity_id"]
    time.sleep(0.2)  # at 1000 contacts/s, long enough to finish were it not held

    first = api.get(v3("/activities"), timeout=5).json()["activities"][0]
    second = api.get(v3(f"/activities/{activity_id}"), timeout=5).json()
    assert (first["activity_id"], first["state"]) == (activity_id, "initialized")
    assert second["state"] == "initialized"
    deadline = time.monotonic() + 5
    while (third := api.get(v3(f"/activities/{activity_id}"), timeout=5).json())["state"] != "completed":
        assert time.monotonic() < deadline, third
        time.sleep(0.01)
    assert sandbox.list_member_emails(newsletter) == {"held@example.com"}
    assert sandbox.processing_rate == rate


def test_invalid_cursor_unknown_path_wrong_method_and_content_type(api, v3, sandbox):
    assert api.get(v3("/contact_lists"), params={"cursor": "garbage"}, timeout=5).status_code == 400
    assert api.get(v3("/nothing_here"), timeout=5).status_code == 404
    assert api.delete(v3("/contact_lists"), timeout=5).status_code == 405
    no_json = api.post(
        v3("/activities/contacts_json_import"),
        data=b'{"import_data": [], "list_ids": []}',
        headers={"Content-Type": "text/plain"},
        timeout=5,
    )
    assert no_json.status_code == 415
    assert requests.get(sandbox.base_url + "/health", timeout=5).json() == {"status": "ok"}


def test_membership_counts_all_and_active(sandbox, api, v3):
    newsletter = sandbox.list_ids["Newsletter"]
    import_contacts(api, v3, [{"email": f"m{n}@example.com"} for n in range(3)], [newsletter])
    sandbox.mark_unsubscribed(["m0@example.com"])
    url = v3(f"/contact_lists/{newsletter}")
    assert api.get(url, params={"include_membership_count": "all"}, timeout=5).json()["membership_count"] == 3
    assert (
        api.get(url, params={"include_membership_count": "active"}, timeout=5).json()["membership_count"] == 2
    )


def test_chunked_request_bodies_are_read(sandbox, api, v3):
    payload = json.dumps(
        {"import_data": [{"email": "chunk@example.com"}], "list_ids": [sandbox.list_ids["Newsletter"]]}
    )
    response = api.post(
        v3("/activities/contacts_json_import"),
        data=(part.encode() for part in (payload[:10], payload[10:])),
        headers={"Content-Type": "application/json"},
        timeout=5,
    )
    assert response.status_code == 201
    assert "chunk@example.com" in sandbox.list_members(sandbox.list_ids["Newsletter"])


def _valid_bodies(sandbox) -> dict[str, dict]:
    """A valid body for each POST endpoint that checks top-level properties."""
    newsletter = sandbox.list_ids["Newsletter"]
    return {
        "/activities/contacts_json_import": {
            "import_data": [{"email": "top@example.com"}],
            "list_ids": [newsletter],
        },
        "/activities/remove_list_memberships": {
            "source": {"contact_ids": [sandbox.contact_id("member@example.com")]},
            "list_ids": [newsletter],
        },
        "/contact_custom_fields": {"label": "Favourite colour", "type": "string"},
    }


@pytest.mark.parametrize(
    ("path", "error_key"),
    [
        ("/activities/contacts_json_import", "contacts_json_import.unknown_property"),
        ("/activities/remove_list_memberships", "remove_list_memberships.unknown_property"),
        ("/contact_custom_fields", "custom_fields.unknown_property"),
    ],
    ids=["contacts_json_import", "remove_list_memberships", "contact_custom_fields"],
)
def test_unknown_top_level_property_is_a_400_array_and_changes_nothing(sandbox, api, v3, path, error_key):
    import_contacts(api, v3, [{"email": "member@example.com"}], [sandbox.list_ids["Newsletter"]])
    activities_before = len(sandbox.state.activities)
    body = _valid_bodies(sandbox)[path]

    response = post_json(api, v3(path), {**body, "zz_unexpected": "jane@example.com"})

    assert response.status_code == 400
    assert response.json() == [{"error_key": error_key, "error_message": "Unknown property 'zz_unexpected'."}]
    assert len(sandbox.state.activities) == activities_before
    assert set(sandbox.list_members(sandbox.list_ids["Newsletter"])) == {"member@example.com"}
    assert set(sandbox.custom_field_ids) == {"loyalty_tier"}
    # the same body without the extra property is accepted
    assert post_json(api, v3(path), body).status_code == 201
