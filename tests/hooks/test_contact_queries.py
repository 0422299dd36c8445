"""The hook's read methods for finding changes: ``get_contact_list(include_membership_count=)``
and ``iter_contact_pages`` with its filters; parameter formatting against mocked HTTP, then the
same calls against the sandbox over real HTTP."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
import responses

from airflow_provider_constantcontact.hooks import _tokens
from airflow_provider_constantcontact.hooks._token_store import MemoryTokenStore
from airflow_provider_constantcontact.hooks.constantcontact import api_timestamp
from tests.hooks.helpers import API, TOKEN_URL, fast_hook, future, make_jwt, token_body
from tests.hooks.test_constantcontact_sandbox import api_requests, import_and_wait, sandbox_hook

LIST_ID = "7d5e8f0a-1111-2222-3333-444455556666"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    _tokens.clear_process_cache()
    monkeypatch.setattr(_tokens, "INVALID_GRANT_RECHECK_DELAYS", (0.0, 0.001))
    yield
    _tokens.clear_process_cache()


@pytest.fixture
def authed():
    """Mocked HTTP with a working token endpoint."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.post(TOKEN_URL, json=token_body(make_jwt(future(), "tok")))
        yield rsps


def sent_queries(rsps, path: str) -> list[dict[str, str]]:
    """The query parameters of each request to ``path``, in order."""
    return [
        {k: v[0] for k, v in parse_qs(urlsplit(c.request.url).query).items()}
        for c in rsps.calls
        if urlsplit(c.request.url).path == urlsplit(API + path).path
    ]


# ------------------------------------------------------------------------- mocked HTTP


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2024, 5, 1, 8, 30, 15, 123456, tzinfo=timezone.utc), "2024-05-01T08:30:15.123Z"),
        (datetime(2024, 5, 1, 10, 30, tzinfo=ZoneInfo("Europe/Paris")), "2024-05-01T08:30:00.000Z"),
        (datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=-5))), "2024-01-01T05:00:00.000Z"),
        ("2024-05-01", "2024-05-01"),
    ],
)
def test_api_timestamp_is_utc_with_milliseconds(value, expected):
    assert api_timestamp(value) == expected


def test_api_timestamp_refuses_a_naive_datetime():
    with pytest.raises(ValueError, match="timezone-aware"):
        api_timestamp(datetime(2024, 5, 1, 8, 30))


def test_get_contact_list_asks_for_the_membership_count_only_when_told(authed):
    authed.get(f"{API}/contact_lists/{LIST_ID}", json={"list_id": LIST_ID, "membership_count": 3})
    hook = fast_hook(MemoryTokenStore())

    hook.get_contact_list(LIST_ID)
    hook.get_contact_list(LIST_ID, include_membership_count=True)
    hook.get_contact_list(LIST_ID, include_membership_count="active")

    assert sent_queries(authed, f"/contact_lists/{LIST_ID}") == [
        {},
        {"include_membership_count": "all"},
        {"include_membership_count": "active"},
    ]


def test_iter_contact_pages_formats_every_filter_as_the_api_wants(authed):
    authed.get(
        f"{API}/contacts",
        json={"contacts": [{"contact_id": "c1"}], "_links": {"next": {"href": "/v3/contacts?cursor=abc"}}},
    )
    authed.get(f"{API}/contacts", json={"contacts": [{"contact_id": "c2"}]})
    hook = fast_hook(MemoryTokenStore())
    since = datetime(2024, 5, 1, 10, 0, tzinfo=ZoneInfo("Europe/Paris"))

    pages = list(
        hook.iter_contact_pages(
            LIST_ID,
            lists=["other-list", LIST_ID],
            status="all",
            updated_after=since,
            updated_before="2024-05-02T00:00:00Z",
            optout_after=since + timedelta(hours=1),
            include=["list_memberships", "custom_fields", "list_memberships"],
            limit=200,
        )
    )

    assert pages == [[{"contact_id": "c1"}], [{"contact_id": "c2"}]]
    first, second = sent_queries(authed, "/contacts")
    assert first == {
        "lists": f"{LIST_ID},other-list",
        "status": "all",
        "updated_after": "2024-05-01T08:00:00.000Z",
        "updated_before": "2024-05-02T00:00:00Z",
        "optout_after": "2024-05-01T09:00:00.000Z",
        "include": "list_memberships,custom_fields",
        "limit": "200",
    }
    assert second == {"cursor": "abc"}  # the next link alone: it carries the query


def test_iter_contact_pages_without_filters_lists_the_account(authed):
    authed.get(f"{API}/contacts", json={"contacts": []})
    hook = fast_hook(MemoryTokenStore())

    assert list(hook.iter_contact_pages(include="list_memberships")) == [[]]
    assert sent_queries(authed, "/contacts") == [{"include": "list_memberships", "limit": "500"}]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lists": [f"l{n}" for n in range(26)]}, "at most 25"),
        ({"list_id": "l0", "lists": [f"l{n}" for n in range(1, 26)]}, "at most 25"),
        ({"lists": "l1,l2"}, "sequence of list ids"),
        ({"updated_after": datetime(2024, 5, 1)}, "timezone-aware"),
        ({"optout_after": datetime(2024, 5, 1)}, "timezone-aware"),
        ({"limit": 0}, "1 to 500"),
    ],
)
def test_iter_contact_pages_refuses_what_the_api_would_and_sends_nothing(authed, kwargs, message):
    hook = fast_hook(MemoryTokenStore())
    with pytest.raises(ValueError, match=message):
        hook.iter_contact_pages(**kwargs)
    assert len(authed.calls) == 0


def test_twenty_five_lists_are_accepted(authed):
    authed.get(f"{API}/contacts", json={"contacts": []})
    ids = [f"l{n}" for n in range(25)]
    list(fast_hook(MemoryTokenStore()).iter_contact_pages(ids[0], lists=ids))
    assert sent_queries(authed, "/contacts")[0]["lists"] == ",".join(ids)


# ------------------------------------------------------------------------------ the sandbox


def test_changes_since_a_run_through_the_hook_against_the_sandbox(constantcontact_sandbox):
    """What an export asks the morning after: who changed since its last run, in which lists,
    who unsubscribed; at one request a page and none wasted on a quiet day."""
    sandbox = constantcontact_sandbox
    hook = sandbox_hook(sandbox)
    vip = sandbox.create_list("VIP")
    sandbox.add_list_members(vip, [f"m{n}@example.com" for n in range(1200)])
    last_run = sandbox.now()
    sandbox.advance_time(3600)
    sandbox.leave_list(vip, ["m1@example.com"])
    sandbox.mark_unsubscribed(["m2@example.com"])
    import_and_wait(hook, ["m3@example.com"], sandbox.create_list("Other"))

    def emails(pages) -> dict[str, list[str] | None]:
        return {c["email_address"]["address"]: c.get("list_memberships") for page in pages for c in page}

    changed = emails(hook.iter_contact_pages(updated_after=last_run, include=["list_memberships"]))
    assert changed.keys() == {"m1@example.com", "m2@example.com", "m3@example.com"}
    assert changed["m1@example.com"] == []  # left VIP by itself
    assert vip in changed["m3@example.com"]
    assert emails(hook.iter_contact_pages(vip, optout_after=last_run)).keys() == {"m2@example.com"}

    before = len(api_requests(sandbox, "/v3/contacts"))
    quiet = list(hook.iter_contact_pages(vip, updated_after=sandbox.now(), include="list_memberships"))
    assert quiet == [[]]
    assert len(api_requests(sandbox, "/v3/contacts")) == before + 1

    pages = list(hook.iter_contact_pages(vip, updated_after=last_run - timedelta(seconds=1), limit=500))
    assert [len(page) for page in pages] == [500, 500, 199]  # m1 left; the rest were seeded after
    assert len(api_requests(sandbox, "/v3/contacts")) == before + 1 + 3


def test_membership_count_through_the_hook_against_the_sandbox(constantcontact_sandbox):
    sandbox = constantcontact_sandbox
    hook = sandbox_hook(sandbox)
    vip = sandbox.create_list("VIP")
    sandbox.add_list_members(vip, [f"m{n}@example.com" for n in range(5)])
    sandbox.leave_list(vip, ["m0@example.com"])
    sandbox.mark_unsubscribed(["m1@example.com"])

    assert "membership_count" not in hook.get_contact_list(vip)
    assert hook.get_contact_list(vip, include_membership_count=True)["membership_count"] == 4
    assert hook.get_contact_list(vip, include_membership_count="active")["membership_count"] == 3
    counts = {
        lst["list_id"]: lst["membership_count"]
        for lst in hook.iter_contact_lists(include_membership_count=True)
    }
    assert counts[vip] == 4
