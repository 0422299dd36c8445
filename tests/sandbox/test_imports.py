"""contacts_json_import contract: validation, silent truncation, counters, progression, speed."""

from __future__ import annotations

import json
import time

import pytest

from tests.sandbox.conftest import import_body

MAX_BYTES = 4 * 1024 * 1024


def post_import(api, sandbox, body: bytes):
    return api.post(
        sandbox.api_base_url + "/activities/contacts_json_import",
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=60,
    )


def imported(api, sandbox, contacts, list_ids=None) -> dict:
    response = post_import(api, sandbox, import_body(contacts, list_ids or [sandbox.list_ids["Newsletter"]]))
    assert response.status_code == 201, response.text
    activity = response.json()
    assert activity["state"] == "initialized"
    assert activity["_links"]["self"]["href"] == f"/v3/activities/{activity['activity_id']}"
    return api.get(sandbox.base_url + activity["_links"]["self"]["href"], timeout=5).json()


def test_import_creates_and_updates_contacts_and_adds_them_to_lists(sandbox, api):
    newsletter = sandbox.list_ids["Newsletter"]
    second = sandbox.create_list("Second")
    done = imported(
        api,
        sandbox,
        [
            {"email": "ann@example.com", "first_name": "Ann", "cf:loyalty_tier": "gold", "birthday_month": 4},
            {"email": "bob@example.com", "last_name": "Builder", "street": "s" * 255, "city": "c" * 50},
        ],
        [newsletter, second],
    )
    assert done["state"] == "completed"
    assert done["percent_done"] == 100
    assert done["activity_errors"] == []
    assert done["status"] == {
        "items_total_count": 2,
        "items_completed_count": 2,
        "person_count": 2,
        "error_count": 0,
        "correctable_count": 0,
        "cannot_add_to_list_count": 0,
    }
    members = sandbox.list_members(newsletter)
    assert members["ann@example.com"] == {"first_name": "Ann", "cf:loyalty_tier": "gold", "birthday_month": 4}
    assert set(sandbox.list_members(second)) == {"ann@example.com", "bob@example.com"}
    # an existing contact gets only the properties sent
    imported(api, sandbox, [{"email": "ANN@example.com", "last_name": "Smith"}])
    assert sandbox.list_members(newsletter)["ANN@example.com"] == {
        "first_name": "Ann",
        "last_name": "Smith",
        "cf:loyalty_tier": "gold",
        "birthday_month": 4,
    }
    via_python = sandbox.get_activity(done["activity_id"])
    assert (via_python["state"], via_python["status"]) == (done["state"], done["status"])


def test_invalid_emails_are_correctable_and_unsubscribed_cannot_be_added(sandbox, api):
    newsletter = sandbox.list_ids["Newsletter"]
    sandbox.mark_unsubscribed(["gone@example.com"])
    done = imported(
        api,
        sandbox,
        [
            {"email": "ok@example.com"},
            {"email": "not-an-email"},
            {"email": "also@bad"},
            {"email": "gone@example.com", "first_name": "Gone"},
            {"first_name": "No email"},
        ],
    )
    assert done["status"] == {
        "items_total_count": 5,
        "items_completed_count": 5,
        "person_count": 2,  # ok@ and gone@ (updated, not added)
        "error_count": 3,  # two correctable + one without any address
        "correctable_count": 2,
        "cannot_add_to_list_count": 1,
    }
    assert set(sandbox.list_members(newsletter)) == {"ok@example.com"}


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"import_data": [{"email": "a@example.com"}], "list_ids": []}, "list_ids"),
        ({"import_data": [{"email": "a@example.com"}], "list_ids": ["x"] * 51}, "list_ids"),
        (
            {
                "import_data": [{"email": "a@example.com"}],
                "list_ids": ["8d6c3f1e-0000-4000-8000-000000000000"],
            },
            "List",
        ),
        ({"import_data": [], "list_ids": "NEWSLETTER"}, "import_data"),
        (
            {"import_data": [{"email": "a@example.com", "shoe_size": "9"}], "list_ids": "NEWSLETTER"},
            "unknown property",
        ),
        ({"import_data": [{"email": "a" * 39 + "@example.com"}], "list_ids": "NEWSLETTER"}, "email"),
        (
            {"import_data": [{"email": "a@example.com", "first_name": "x" * 51}], "list_ids": "NEWSLETTER"},
            "first_name",
        ),
        ({"import_data": [{"email": "a@example.com", "phone": "1" * 51}], "list_ids": "NEWSLETTER"}, "phone"),
        (
            {"import_data": [{"email": "a@example.com", "street": "s" * 256}], "list_ids": "NEWSLETTER"},
            "street",
        ),
        (
            {
                "import_data": [{"email": "a@example.com", "cf:loyalty_tier": "v" * 256}],
                "list_ids": "NEWSLETTER",
            },
            "cf:",
        ),
        (
            {"import_data": [{"email": "a@example.com", "cf:nope": "v"}], "list_ids": "NEWSLETTER"},
            "does not exist",
        ),
        ({"import_data": [{"email": "a@example.com", "first_name": 7}], "list_ids": "NEWSLETTER"}, "string"),
        (
            {"import_data": [{"email": "a@example.com", "birthday_month": 13}], "list_ids": "NEWSLETTER"},
            "birthday",
        ),
        ({"import_data": ["a@example.com"], "list_ids": "NEWSLETTER"}, "object"),
        ({"import_data": [{"email": "a@example.com"}]}, "list_ids"),
    ],
)
def test_import_validation_rejects_the_request_with_a_400_array(sandbox, api, payload, fragment):
    if payload.get("list_ids") == "NEWSLETTER":
        payload = {**payload, "list_ids": [sandbox.list_ids["Newsletter"]]}
    response = post_import(api, sandbox, json.dumps(payload).encode())
    assert response.status_code == 400
    body = response.json()
    assert isinstance(body, list)
    assert set(body[0]) == {"error_key", "error_message"}
    assert fragment in body[0]["error_message"]
    assert "a@example.com" not in response.text  # no personal data in error messages
    assert sandbox.list_members(sandbox.list_ids["Newsletter"]) == {}


def test_more_than_25_custom_fields_is_rejected(sandbox, api):
    names = [f"f{n}" for n in range(26)]
    for name in names:
        sandbox.create_custom_field(name)
    contact = {"email": "a@example.com", **{f"cf:{name}": "v" for name in names}}
    rejected = post_import(api, sandbox, import_body([contact], [sandbox.list_ids["Newsletter"]]))
    assert rejected.status_code == 400
    assert "25 custom fields" in rejected.json()[0]["error_message"]
    del contact["cf:f25"]
    assert (
        post_import(api, sandbox, import_body([contact], [sandbox.list_ids["Newsletter"]])).status_code == 201
    )


def test_malformed_json_is_400(sandbox, api):
    response = post_import(api, sandbox, b'{"import_data": [')
    assert response.status_code == 400
    assert response.json()[0]["error_key"] == "malformed_json"


def contacts_of_size(count: int, pad: int = 60) -> list[dict]:
    return [
        {"email": f"user{n:07d}@example.com", "first_name": "F" * 20, "street": "s" * pad}
        for n in range(count)
    ]


def test_body_over_4_mb_is_silently_truncated_to_the_contacts_within_the_first_4_mb(sandbox, api):
    contacts = contacts_of_size(39_000, pad=120)
    list_id = sandbox.list_ids["Newsletter"]
    body = import_body(contacts, [list_id])
    assert len(body) > MAX_BYTES
    # contacts whose JSON ends within the first 4 MB of the body
    prefix = json.dumps({"import_data": []})[:-2]
    sizes = [len(json.dumps(c)) for c in contacts]
    end, expected = len(prefix) + 1, 0
    for size in sizes:
        end += size
        if end > MAX_BYTES:
            break
        expected += 1
        end += 2  # ", "
    assert expected < len(contacts)
    done = imported(api, sandbox, contacts, [list_id])
    assert done["status"]["items_total_count"] == expected
    assert done["status"]["person_count"] == expected
    members = sandbox.list_members(list_id)
    assert len(members) == expected
    assert contacts[expected - 1]["email"] in members
    assert contacts[expected]["email"] not in members


def test_list_ids_after_a_truncated_import_data_still_count(sandbox, api):
    list_id = sandbox.list_ids["Newsletter"]
    contacts = contacts_of_size(38_000, pad=120)
    body = (
        json.dumps({"import_data": contacts}).encode()[:-1] + b', "list_ids": ["' + list_id.encode() + b'"]}'
    )
    assert len(body) > MAX_BYTES
    response = post_import(api, sandbox, body)
    assert response.status_code == 201
    assert 0 < response.json()["status"]["items_total_count"] < 38_000


def test_more_than_40000_contacts_keeps_only_the_first_40000(sandbox, api):
    contacts = [{"email": f"u{n}@x.io"} for n in range(40_010)]
    list_id = sandbox.list_ids["Newsletter"]
    body = import_body(contacts, [list_id])
    assert len(body) < MAX_BYTES
    done = imported(api, sandbox, contacts, [list_id])
    assert done["status"]["items_total_count"] == 40_000
    members = sandbox.list_members(list_id)
    assert len(members) == 40_000
    assert "u39999@x.io" in members
    assert "u40000@x.io" not in members


def body_and_whole_contacts_within(contacts: list[dict], list_id: str, limit: int) -> tuple[bytes, int]:
    """An import body built by hand, and how many contacts end within its first ``limit`` bytes."""
    head, separator = b'{"import_data": [', b", "
    encoded = [json.dumps(c).encode() for c in contacts]
    body = head + separator.join(encoded) + b'], "list_ids": ["' + list_id.encode() + b'"]}'
    end, within = len(head), 0
    for item in encoded:
        end += len(item)
        if end > limit:
            break
        within += 1
        end += len(separator)
    return body, within


@pytest.mark.parametrize(
    ("pad", "binding"),
    [(60, "4 MB"), (8, "40,000")],
    ids=["4-mb-cut-binds", "40000-cut-binds"],
)
def test_over_4_mb_and_over_40000_contacts_the_4_mb_cut_applies_first(sandbox, api, pad, binding):
    list_id = sandbox.list_ids["Newsletter"]
    contacts = contacts_of_size(48_000, pad=pad)
    body, within = body_and_whole_contacts_within(contacts, list_id, MAX_BYTES)
    assert len(body) > MAX_BYTES
    assert len(contacts) > 40_000
    expected = min(within, 40_000)
    # each case really exercises the cut it is named after
    assert (within < 40_000) == (binding == "4 MB")
    response = post_import(api, sandbox, body)
    assert response.status_code == 201, response.text
    assert response.json()["status"]["items_total_count"] == expected
    members = sandbox.list_members(list_id)
    assert len(members) == expected
    assert contacts[expected - 1]["email"] in members
    assert contacts[expected]["email"] not in members


@pytest.mark.parametrize(
    "layout",
    ["import_data-after-the-cut", "first-contact-crosses-the-cut"],
)
def test_over_4_mb_with_no_contact_within_the_first_4_mb_is_a_400(sandbox, api, layout):
    list_id = sandbox.list_ids["Newsletter"]
    contacts = [{"email": f"late{n}@example.com"} for n in range(3)]
    if layout == "import_data-after-the-cut":
        body = (
            (b'{"list_ids": ["' + list_id.encode() + b'"],' + b" " * MAX_BYTES + b'"import_data": ')
            + json.dumps(contacts).encode()
            + b"}"
        )
    else:
        first = b'{"email": ' + b" " * MAX_BYTES + b'"late0@example.com"}'
        rest = b", ".join(json.dumps(c).encode() for c in contacts[1:])
        body = b'{"import_data": [' + first + b", " + rest + b'], "list_ids": ["' + list_id.encode() + b'"]}'
    assert len(body) > MAX_BYTES
    activities_before = len(sandbox.state.activities)
    response = post_import(api, sandbox, body)
    assert response.status_code == 400
    assert response.json() == [
        {
            "error_key": "import_data.invalid",
            "error_message": f"No contact of import_data ends within the first {MAX_BYTES} bytes"
            " of the body.",
        }
    ]
    assert len(sandbox.state.activities) == activities_before
    assert sandbox.list_members(list_id) == {}


def test_activity_progresses_at_the_processing_rate(sandbox, api):
    sandbox.processing_rate = 50  # contacts a second
    response = post_import(
        api,
        sandbox,
        import_body([{"email": f"p{n}@example.com"} for n in range(30)], [sandbox.list_ids["Newsletter"]]),
    )
    started = time.monotonic()
    activity_id = response.json()["activity_id"]
    url = f"{sandbox.api_base_url}/activities/{activity_id}"
    seen = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        body = api.get(url, timeout=5).json()
        seen.append((body["state"], body["percent_done"], body["status"]["items_completed_count"]))
        if body["state"] == "completed":
            break
        time.sleep(0.05)
    states = [s for s, _, _ in seen]
    assert "processing" in states
    assert states[-1] == "completed"
    processing = [(p, c) for s, p, c in seen if s == "processing"]
    assert all(0 < c < 30 and p == c * 100 // 30 for p, c in processing)
    assert [c for _, _, c in seen] == sorted(c for _, _, c in seen)
    assert seen[-1][1:] == (100, 30)
    # at 50/s 30 contacts take about 0.6 s
    assert time.monotonic() - started >= 0.5


def test_processing_rate_can_change_while_an_activity_runs(sandbox, api):
    sandbox.processing_rate = 0.0001
    response = post_import(
        api, sandbox, import_body([{"email": "q@example.com"}], [sandbox.list_ids["Newsletter"]])
    )
    activity_id = response.json()["activity_id"]
    time.sleep(0.05)
    assert sandbox.get_activity(activity_id)["state"] == "initialized"
    sandbox.processing_rate = None
    assert sandbox.get_activity(activity_id)["state"] == "completed"


def test_fail_next_activity_ends_failed_with_errors_and_imports_nothing(sandbox, api):
    sandbox.fail_next_activity(errors=["Import file is corrupt"])
    failed = imported(api, sandbox, [{"email": "f@example.com"}, {"email": "g@example.com"}])
    assert failed["state"] == "failed"
    assert failed["activity_errors"] == ["Import file is corrupt"]
    assert failed["status"]["items_total_count"] == 2
    assert failed["status"]["error_count"] == 2
    assert failed["status"]["person_count"] == 0
    assert sandbox.list_members(sandbox.list_ids["Newsletter"]) == {}
    # only the next one fails
    assert imported(api, sandbox, [{"email": "f@example.com"}])["state"] == "completed"


@pytest.mark.parametrize("end_state", ["failed", "cancelled", "timed_out"])
def test_fail_next_activity_ends_in_the_given_terminal_state(sandbox, api, end_state):
    sandbox.fail_next_activity(errors=["Stopped by the service"], state=end_state)
    ended = imported(api, sandbox, [{"email": "f@example.com"}, {"email": "g@example.com"}])
    assert ended["state"] == end_state
    assert ended["percent_done"] == 100
    assert ended["activity_errors"] == ["Stopped by the service"]
    assert ended["status"]["items_completed_count"] == ended["status"]["error_count"] == 2
    assert ended["status"]["person_count"] == 0
    assert sandbox.list_members(sandbox.list_ids["Newsletter"]) == {}
    listed = api.get(sandbox.api_base_url + "/activities", params={"state": end_state}, timeout=5).json()
    assert [a["activity_id"] for a in listed["activities"]] == [ended["activity_id"]]
    assert imported(api, sandbox, [{"email": "f@example.com"}])["state"] == "completed"


@pytest.mark.parametrize("bad_state", ["completed", "processing", "FAILED", ""])
def test_fail_next_activity_rejects_a_non_failure_state(sandbox, api, bad_state):
    with pytest.raises(ValueError, match="failed, cancelled, timed_out"):
        sandbox.fail_next_activity(state=bad_state)
    assert imported(api, sandbox, [{"email": "f@example.com"}])["state"] == "completed"


def test_a_4_mb_body_is_parsed_and_applied_well_under_a_second(sandbox, api):
    contacts = [
        {
            "email": f"person{n:07d}@example.com",
            "first_name": "Firstname",
            "last_name": "Lastname",
            "company_name": "Company Inc",
            "cf:loyalty_tier": "gold",
        }
        for n in range(40_000)
    ]
    per_contact = len(json.dumps(contacts[0])) + 2
    del contacts[(MAX_BYTES - 200) // per_contact :]
    body = import_body(contacts, [sandbox.list_ids["Newsletter"]])
    assert 3_900_000 < len(body) <= MAX_BYTES
    started = time.perf_counter()
    response = post_import(api, sandbox, body)
    answered = time.perf_counter() - started
    assert response.status_code == 201
    assert response.json()["status"]["items_total_count"] == len(contacts)
    activity = sandbox.get_activity(response.json()["activity_id"])  # applies it if still queued
    applied = time.perf_counter() - started
    assert activity["status"]["person_count"] == len(contacts)
    assert answered < 0.5, f"answering a 4 MB import took {answered:.2f} s"
    assert applied < 1.0, f"answering and applying a 4 MB import took {applied:.2f} s"
