"""Integration tests: the hook against the local Constant Contact sandbox over real HTTP."""

from __future__ import annotations

import json
import logging
import time

import pytest
import requests
from airflow.sdk import Connection

from airflow_provider_constantcontact.exceptions import (
    ConstantContactNotFoundError,
    ConstantContactQuotaExceededError,
    ConstantContactReauthorizationRequired,
    ConstantContactServerError,
)
from airflow_provider_constantcontact.hooks import _tokens
from airflow_provider_constantcontact.hooks._token_store import MemoryTokenStore
from airflow_provider_constantcontact.hooks.constantcontact import (
    DEFAULT_MAX_REQUESTS_PER_SECOND,
    ConstantContactHook,
)
from tests.hooks.helpers import unique_secret


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    _tokens.clear_process_cache()
    monkeypatch.setattr(_tokens, "INVALID_GRANT_RECHECK_DELAYS", (0.0, 0.01))
    yield
    _tokens.clear_process_cache()


def sandbox_hook(
    sandbox,
    store=None,
    conn_id="cc_sandbox",
    max_attempts=4,
    refresh_token=None,
    backoff_initial=0.01,
    **extra,
) -> ConstantContactHook:
    """A fast-retrying hook on the sandbox; ``refresh_token`` pins the connection's token.

    (``connection_dict()`` always carries the newest refresh token, while a real connection keeps
    the one it was configured with.)
    """
    data = sandbox.connection_dict()
    data["extra"] = json.dumps(
        {**data["extra"], **({"refresh_token": refresh_token} if refresh_token is not None else {}), **extra}
    )
    return ConstantContactHook(
        conn_id,
        connection=Connection(conn_id=conn_id, **data),
        token_store=MemoryTokenStore() if store is None else store,
        max_attempts=max_attempts,
        backoff_initial=backoff_initial,
        backoff_max=max(0.05, backoff_initial * 4),
        backoff_jitter=0.01,
    )


def token_requests(sandbox) -> list:
    return [e for e in sandbox.request_log if e.path.endswith("/token")]


def api_requests(sandbox, prefix="/v3/") -> list:
    return [e for e in sandbox.request_log if e.path.startswith(prefix)]


def test_api_methods_round_trip(constantcontact_sandbox):
    sandbox = constantcontact_sandbox
    hook = sandbox_hook(sandbox)

    newsletter = hook.find_contact_list("Newsletter")
    assert newsletter is not None
    assert hook.get_contact_list(newsletter["list_id"])["name"] == "Newsletter"
    created = hook.create_contact_list("VIP", description="top customers")
    assert {lst["name"] for lst in hook.iter_contact_lists()} == {"Newsletter", "VIP"}
    assert [f["name"] for f in hook.get_custom_fields()] == ["loyalty_tier"]

    contacts = [
        {"email": f"person{i}@example.com", "first_name": f"P{i}", "cf:loyalty_tier": "gold"}
        for i in range(3)
    ]
    activity = hook.import_contacts(contacts, [created["list_id"]])
    deadline = time.monotonic() + 10
    while hook.get_activity(activity["activity_id"])["state"] not in {"completed", "failed"}:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert hook.get_activity(activity["activity_id"])["state"] == "completed"
    assert activity["activity_id"] in {a["activity_id"] for a in hook.iter_activities(state="completed")}
    assert set(sandbox.list_members(created["list_id"])) == {c["email"] for c in contacts}

    members = list(hook.iter_contacts(list_id=created["list_id"], limit=1))  # three pages of one
    assert len(members) == 3
    assert len([e for e in api_requests(sandbox, "/v3/contacts") if e.method == "GET"]) == 3

    removal = hook.remove_list_memberships([members[0]["contact_id"]], [created["list_id"]])
    assert removal["activity_id"]

    with pytest.raises(ConstantContactNotFoundError, match="00000000-0000-0000-0000-000000000000"):
        hook.get_contact_list("00000000-0000-0000-0000-000000000000")


def import_and_wait(hook: ConstantContactHook, emails: list[str], list_id: str) -> None:
    """Import ``emails`` into ``list_id`` through the hook and wait until the sandbox is done."""
    activity_id = hook.import_contacts([{"email": e} for e in emails], [list_id])["activity_id"]
    deadline = time.monotonic() + 10
    while hook.get_activity(activity_id)["state"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.05)


def contacts_requests(sandbox) -> list:
    return [e for e in api_requests(sandbox, "/v3/contacts") if e.method == "GET"]


def test_iter_contact_pages_yields_one_page_per_request(constantcontact_sandbox):
    sandbox = constantcontact_sandbox
    hook = sandbox_hook(sandbox)
    list_id = sandbox.create_list("Mirror")
    emails = [f"member{i}@example.com" for i in range(5)]
    import_and_wait(hook, emails, list_id)
    import_and_wait(hook, ["outsider@example.com"], sandbox.list_ids["Newsletter"])
    before = len(contacts_requests(sandbox))

    sizes = []
    for page in hook.iter_contact_pages(list_id, limit=2):
        sizes.append(len(page))
        assert len(contacts_requests(sandbox)) == before + len(sizes)  # fetched lazily, a page a request

    assert sizes == [2, 2, 1]
    first, *rest = contacts_requests(sandbox)[before:]
    assert first.query == {"lists": list_id, "limit": "2"}
    assert all(set(e.query) == {"cursor"} for e in rest)  # next links carry the query
    members = [c["email_address"]["address"] for page in hook.iter_contact_pages(list_id) for c in page]
    assert sorted(members) == emails


def test_iter_contact_pages_filters_by_status(constantcontact_sandbox):
    sandbox = constantcontact_sandbox
    hook = sandbox_hook(sandbox)
    list_id = sandbox.create_list("Mirror")
    import_and_wait(hook, ["stays@example.com", "leaves@example.com"], list_id)
    sandbox.mark_unsubscribed(["leaves@example.com"])

    def addresses(status):
        pages = hook.iter_contact_pages(list_id, status=status)
        return sorted(c["email_address"]["address"] for page in pages for c in page)

    assert addresses(None) == ["leaves@example.com", "stays@example.com"]
    assert addresses("active") == ["stays@example.com"]
    assert contacts_requests(sandbox)[-1].query == {"lists": list_id, "status": "active", "limit": "500"}


def test_iter_contact_pages_of_an_empty_list_is_one_empty_page(constantcontact_sandbox):
    hook = sandbox_hook(constantcontact_sandbox)

    assert list(hook.iter_contact_pages(constantcontact_sandbox.create_list("Empty"))) == [[]]
    assert len(contacts_requests(constantcontact_sandbox)) == 1


@pytest.mark.parametrize("limit", [0, 501])
def test_iter_contact_pages_refuses_a_page_size_the_api_would_reject(constantcontact_sandbox, limit):
    with pytest.raises(ValueError, match="1 to 500"):
        sandbox_hook(constantcontact_sandbox).iter_contact_pages("any", limit=limit)
    assert api_requests(constantcontact_sandbox) == []


def test_rotating_refresh_token_is_stored_and_used_by_the_next_process(constantcontact_sandbox_factory):
    sandbox = constantcontact_sandbox_factory(rotating_refresh_tokens=True, rate_limit=0, token_rate_limit=0)
    original = sandbox.refresh_token
    store = MemoryTokenStore()

    list(sandbox_hook(sandbox, store, refresh_token=original).iter_contact_lists())
    assert store.record.refresh_token == sandbox.refresh_token != original

    # A new process: no cached token; the stored access token is reused without a refresh.
    _tokens.clear_process_cache()
    list(sandbox_hook(sandbox, store, refresh_token=original).iter_contact_lists())
    assert len(token_requests(sandbox)) == 1

    # Once the access token is refused, the stored (rotated) refresh token is used, not the dead original.
    sandbox.expire_access_tokens()
    _tokens.clear_process_cache()
    list(sandbox_hook(sandbox, store, refresh_token=original).iter_contact_lists())
    assert [e.status for e in token_requests(sandbox)] == [200, 200]
    assert store.record.refresh_token == sandbox.refresh_token


def test_close_releases_the_pooled_http_connections(constantcontact_sandbox):
    hook = sandbox_hook(constantcontact_sandbox)
    hook.find_contact_list("Newsletter")
    pools = hook.get_conn().get_adapter(constantcontact_sandbox.api_base_url).poolmanager.pools
    assert len(pools) == 1  # one keep-alive pool to the sandbox host

    hook.close()

    assert len(pools) == 0


def test_expired_access_token_401_is_refreshed_and_retried(constantcontact_sandbox):
    hook = sandbox_hook(constantcontact_sandbox)
    list(hook.iter_contact_lists())
    constantcontact_sandbox.expire_access_tokens()

    assert hook.find_contact_list("Newsletter")
    statuses = [e.status for e in api_requests(constantcontact_sandbox)]
    assert statuses[-2:] == [401, 200]
    assert len(token_requests(constantcontact_sandbox)) == 2


def test_revoked_refresh_token_fails_with_reauthorisation_instructions(constantcontact_sandbox):
    constantcontact_sandbox.revoke_refresh_token()
    with pytest.raises(ConstantContactReauthorizationRequired, match="constantcontact-auth"):
        list(sandbox_hook(constantcontact_sandbox).iter_contact_lists())


def test_transient_failures_are_retried(constantcontact_sandbox):
    sandbox = constantcontact_sandbox
    hook = sandbox_hook(sandbox, max_attempts=5)
    hook.tokens.access_token()

    sandbox.fail_next(2, status=500, path_prefix="/v3/contact_lists")
    assert hook.find_contact_list("Newsletter")
    sandbox.fail_next(2, status=429, path_prefix="/v3/contact_lists")
    assert hook.find_contact_list("Newsletter")
    sandbox.drop_next(1, path_prefix="/v3/contact_lists")
    assert hook.find_contact_list("Newsletter")
    assert [e.status for e in api_requests(sandbox)].count(429) == 2


def test_persistent_server_errors_surface(constantcontact_sandbox):
    hook = sandbox_hook(constantcontact_sandbox, max_attempts=3)
    hook.tokens.access_token()
    constantcontact_sandbox.fail_next(10, status=503, path_prefix="/v3/contact_lists")

    with pytest.raises(ConstantContactServerError, match="gave up after 3 attempts"):
        hook.find_contact_list("Newsletter")


def test_daily_quota_fails_fast(constantcontact_sandbox):
    hook = sandbox_hook(constantcontact_sandbox, max_attempts=5)
    hook.tokens.access_token()
    constantcontact_sandbox.exhaust_daily_quota()
    before = len(api_requests(constantcontact_sandbox))

    with pytest.raises(ConstantContactQuotaExceededError, match=r"10,000.*00:00 UTC"):
        hook.find_contact_list("Newsletter")
    assert len(api_requests(constantcontact_sandbox)) == before + 1


def test_pacing_keeps_under_the_sandbox_rate_limit(constantcontact_sandbox_factory):
    sandbox = constantcontact_sandbox_factory(rate_limit=10, token_rate_limit=0, lists=["A"])
    hook = sandbox_hook(sandbox, max_requests_per_second=10)

    for _ in range(12):
        hook.find_contact_list("A")

    assert 429 not in [e.status for e in api_requests(sandbox)]


def test_a_connection_without_a_rate_setting_is_paced_at_four_requests_a_second(constantcontact_sandbox):
    sandbox = constantcontact_sandbox  # its rate limit is off: only the hook's pacing spaces calls
    data = sandbox.connection_dict()
    del data["extra"]["max_requests_per_second"]
    data["extra"] = json.dumps(data["extra"])
    hook = ConstantContactHook("cc_default_pace", connection=Connection(conn_id="cc_default_pace", **data))
    hook.tokens.access_token()  # the token endpoint has a pacer of its own

    assert hook.max_requests_per_second == DEFAULT_MAX_REQUESTS_PER_SECOND == 4
    started = time.monotonic()
    for _ in range(9):
        hook.find_contact_list("Newsletter")
    elapsed = time.monotonic() - started

    # Nine calls at four a second: the ninth may start 8 x 0.25 s after the first, not before.
    assert elapsed >= 1.95
    calls = api_requests(sandbox)
    assert len(calls) == 9
    assert calls[-1].time - calls[0].time >= 1.9


def test_token_endpoint_throttling_is_waited_out(constantcontact_sandbox_factory):
    """With pacing off the second refresh within a second is throttled (429) and retried."""
    sandbox = constantcontact_sandbox_factory(rate_limit=0, token_rate_limit=1)
    hook = sandbox_hook(sandbox, max_requests_per_second=0, max_attempts=6, backoff_initial=0.25)
    hook.tokens.access_token()
    sandbox.expire_access_tokens()
    _tokens.clear_process_cache()

    assert hook.find_contact_list("Newsletter") is None
    statuses = [e.status for e in token_requests(sandbox)]
    assert statuses[0] == 200
    assert 429 in statuses
    assert statuses[-1] == 200


def test_token_endpoint_is_paced_when_pacing_is_on(constantcontact_sandbox_factory):
    sandbox = constantcontact_sandbox_factory(rate_limit=0, token_rate_limit=1)
    hook = sandbox_hook(sandbox, max_requests_per_second=4)
    hook.tokens.access_token()
    sandbox.expire_access_tokens()
    _tokens.clear_process_cache()

    hook.tokens.access_token()
    assert [e.status for e in token_requests(sandbox)] == [200, 200]


def test_no_secret_or_email_in_logs(constantcontact_sandbox_factory, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    # Secrets unique to this test: the process-global masker already knows the sandbox defaults.
    sandbox = constantcontact_sandbox_factory(
        client_secret=unique_secret(),
        refresh_token=unique_secret(),
        rotating_refresh_tokens=True,
        rate_limit=0,
        token_rate_limit=0,
        lists=["L"],
    )
    original = sandbox.refresh_token
    store = MemoryTokenStore()
    hook = sandbox_hook(sandbox, store, refresh_token=original)
    list_id = hook.find_contact_list("L")["list_id"]
    hook.import_contacts([{"email": "secret.person@example.com"}], [list_id])
    list(hook.iter_contacts(email="secret.person@example.com"))
    sandbox.expire_access_tokens()
    sandbox.fail_next(1, status=500)
    hook.find_contact_list("L")

    out = capsys.readouterr()
    text = caplog.text + out.out + out.err
    assert "Refreshed the Constant Contact access token" in text
    assert "/v3/contacts" in text  # urllib3 debug lines were captured, so the check below means something
    secrets = [original, store.record.refresh_token, store.record.access_token, sandbox.client_secret]
    for secret in [*secrets, "secret.person@example.com", "secret.person%40example.com"]:
        assert secret not in text


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("ok", "token valid, contact lists readable"),
        ("bad_client", "invalid_client"),
        ("revoked", "revoked, expired or already used"),
        ("no_contact_data", "lacks the scope(s) contact_data (granted"),
        ("no_offline_access", "lacks the scope(s) offline_access (granted"),
        ("wrong_api_base_url", "does not look like the Constant Contact V3 API"),
        ("unreachable_api", "Cannot reach the API"),
        ("unreachable_token_url", "Cannot reach the token URL"),
        ("wrong_token_url", "check the connection's token_url"),
        ("missing_refresh_token", "refresh_token"),
    ],
)
def test_test_connection_explains_what_is_wrong(constantcontact_sandbox_factory, case, expected):
    options = {"rate_limit": 0, "token_rate_limit": 0}
    if case == "no_contact_data":
        options["scopes"] = ["account_read", "offline_access"]
    if case == "no_offline_access":
        options["scopes"] = ["account_read", "contact_data"]
    sandbox = constantcontact_sandbox_factory(**options)
    extra: dict = {}
    if case == "revoked":
        sandbox.revoke_refresh_token()
    if case == "wrong_api_base_url":
        extra["api_base_url"] = sandbox.base_url + "/v2"
    if case == "unreachable_api":
        extra["api_base_url"] = "http://127.0.0.1:9/v3"
    if case == "unreachable_token_url":
        extra["token_url"] = "http://127.0.0.1:9/token"
    if case == "wrong_token_url":
        extra["token_url"] = sandbox.base_url + "/oauth2/v1/not-the-token-endpoint"
    if case == "missing_refresh_token":
        extra["refresh_token"] = ""
    hook = sandbox_hook(sandbox, **extra)
    if case == "bad_client":
        hook.connection.password = "not-the-secret"

    ok, message = hook.test_connection()

    assert ok is (case == "ok"), message
    assert expected in message
    assert sandbox.refresh_token not in message


def test_test_connection_checks_the_secret_even_when_a_token_is_cached(constantcontact_sandbox):
    """The Test button must not pass a wrong secret because an earlier test cached a token."""
    store = MemoryTokenStore()
    assert sandbox_hook(constantcontact_sandbox, store=store).test_connection()[0]
    wrong = sandbox_hook(constantcontact_sandbox, store=store)
    wrong.connection.password = "not-the-secret"

    ok, message = wrong.test_connection()

    assert not ok
    assert "invalid_client" in message


def test_a_public_client_connection_refreshes_without_a_secret(constantcontact_sandbox):
    """A device-flow application has no client secret: its refresh token works with the client id."""
    sandbox = constantcontact_sandbox
    scope = "contact_data offline_access"
    device = requests.post(
        sandbox.device_authorize_url, data={"client_id": sandbox.client_id, "scope": scope}, timeout=10
    ).json()
    sandbox.approve_device(device["user_code"])
    tokens = requests.post(
        sandbox.token_url,
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "device_code": device["device_code"],
            "client_id": sandbox.client_id,
        },
        timeout=10,
    ).json()
    hook = sandbox_hook(sandbox, refresh_token=tokens["refresh_token"])
    hook.connection.password = None

    assert hook.test_connection() == (
        True,
        f"Connected to Constant Contact at {sandbox.api_base_url}: token valid, contact lists readable.",
    )
    assert "Newsletter" in [lst["name"] for lst in hook.iter_contact_lists()]
    assert [e.status for e in token_requests(sandbox)][-1] == 200
