"""Unit tests of ConstantContactHook against mocked HTTP (``responses``)."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from datetime import datetime, timezone
from urllib.parse import parse_qs

import pytest
import requests
import responses

from airflow_provider_constantcontact.exceptions import (
    ConstantContactAuthError,
    ConstantContactError,
    ConstantContactNotFoundError,
    ConstantContactQuotaExceededError,
    ConstantContactRateLimitError,
    ConstantContactReauthorizationRequired,
    ConstantContactServerError,
    ConstantContactValidationError,
)
from airflow_provider_constantcontact.hooks import _http, _tokens
from airflow_provider_constantcontact.hooks._token_store import (
    MemoryTokenStore,
    TokenRecord,
    lineage_origin,
)
from airflow_provider_constantcontact.hooks.constantcontact import MAX_IMPORT_BODY_BYTES, ConstantContactHook
from tests.hooks.helpers import (
    API,
    CLIENT_ID,
    CLIENT_SECRET,
    REFRESH_TOKEN,
    TOKEN_URL,
    fast_hook,
    future,
    make_connection,
    make_jwt,
    token_body,
    unique_secret,
)

LISTS = f"{API}/contact_lists"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch):
    """Each test starts with no cached token and waits only milliseconds after invalid_grant."""
    _tokens.clear_process_cache()
    monkeypatch.setattr(_tokens, "INVALID_GRANT_RECHECK_DELAYS", (0.0, 0.001))
    yield
    _tokens.clear_process_cache()


@pytest.fixture
def mocked():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def token_calls(rsps) -> list:
    return [c for c in rsps.calls if c.request.url == TOKEN_URL]


def api_calls(rsps) -> list:
    return [c for c in rsps.calls if c.request.url.startswith(API)]


def record(refresh_token: str, access_token: str, expires_at: float, now: float | None = None) -> TokenRecord:
    now = time.time() if now is None else now
    return TokenRecord(
        client_id=CLIENT_ID,
        origin=lineage_origin(CLIENT_ID, REFRESH_TOKEN),
        refresh_token=refresh_token,
        access_token=access_token,
        expires_at=expires_at,
        obtained_at=now - 60,
    )


# ----------------------------------------------------------------------------------------- tokens
def test_refresh_uses_basic_client_auth_and_a_form_body(mocked):
    access = make_jwt(future(), "a1")
    mocked.post(TOKEN_URL, json=token_body(access))
    mocked.get(LISTS, json={"lists": []})

    fast_hook(MemoryTokenStore()).request("GET", "/contact_lists")

    (call,) = token_calls(mocked)
    expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert call.request.headers["Authorization"] == f"Basic {expected}"
    assert call.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(call.request.body) == {"grant_type": ["refresh_token"], "refresh_token": [REFRESH_TOKEN]}
    assert api_calls(mocked)[0].request.headers["Authorization"] == f"Bearer {access}"


def test_a_public_client_refreshes_with_its_client_id_in_the_form_and_no_basic_auth(mocked):
    """PKCE / device-flow applications have no client secret."""
    mocked.post(TOKEN_URL, json=token_body(make_jwt(future(), "pub")))
    mocked.get(LISTS, json={"lists": []})
    hook = fast_hook(MemoryTokenStore())
    hook.connection.password = None

    hook.request("GET", "/contact_lists")

    (call,) = token_calls(mocked)
    assert "Authorization" not in call.request.headers
    assert parse_qs(call.request.body) == {
        "grant_type": ["refresh_token"],
        "refresh_token": [REFRESH_TOKEN],
        "client_id": [CLIENT_ID],
    }


def test_a_hook_given_a_connection_names_that_connection():
    assert ConstantContactHook(connection=make_connection("cc_marketing")).constantcontact_conn_id == (
        "cc_marketing"
    )


def test_token_is_cached_and_refreshed_proactively_before_its_jwt_exp(mocked):
    now = [1_000_000.0]
    first, second = make_jwt(now[0] + 86400, "first"), make_jwt(now[0] + 2 * 86400, "second")
    mocked.post(TOKEN_URL, json=token_body(first))
    mocked.post(TOKEN_URL, json=token_body(second))
    hook = fast_hook(MemoryTokenStore())
    hook.tokens._clock = lambda: now[0]

    assert hook.tokens.access_token() == first
    now[0] += 86400 - 301  # more than the 5-minute margin left: keep it
    assert hook.tokens.access_token() == first
    assert len(token_calls(mocked)) == 1
    now[0] += 2  # within 5 minutes of exp: refresh before the API would refuse it
    assert hook.tokens.access_token() == second
    assert len(token_calls(mocked)) == 2


def test_expiry_falls_back_to_expires_in_when_the_token_is_not_a_jwt(mocked):
    now = [2_000_000.0]
    mocked.post(TOKEN_URL, json={**token_body("opaque-token-one"), "expires_in": 1000})
    mocked.post(TOKEN_URL, json={**token_body("opaque-token-two"), "expires_in": 1000})
    hook = fast_hook(MemoryTokenStore())
    hook.tokens._clock = lambda: now[0]

    assert hook.tokens.access_token() == "opaque-token-one"
    assert hook.tokens.cached_record().expires_at == now[0] + 1000
    now[0] += 1000 - 301 + 2  # margin is min(300 s, half the lifetime = 500 s)
    assert hook.tokens.access_token() == "opaque-token-two"


def test_hooks_of_one_process_share_the_access_token(mocked):
    mocked.post(TOKEN_URL, json=token_body(make_jwt(future(), "shared")))
    mocked.get(LISTS, json={"lists": []})

    fast_hook(MemoryTokenStore()).request("GET", "/contact_lists")
    fast_hook(MemoryTokenStore()).request("GET", "/contact_lists")

    assert len(token_calls(mocked)) == 1


def test_401_refreshes_once_and_retries_once(mocked):
    old, new = make_jwt(future(), "old"), make_jwt(future(), "new")
    mocked.post(TOKEN_URL, json=token_body(old))
    mocked.post(TOKEN_URL, json=token_body(new))
    mocked.get(LISTS, status=401, json={"error_key": "unauthorized", "error_message": "Unauthorized"})
    mocked.get(LISTS, json={"lists": [{"list_id": "l1", "name": "A"}]})

    assert fast_hook(MemoryTokenStore()).request("GET", "/contact_lists") == {
        "lists": [{"list_id": "l1", "name": "A"}]
    }
    auths = [c.request.headers["Authorization"] for c in api_calls(mocked)]
    assert auths == [f"Bearer {old}", f"Bearer {new}"]
    assert len(token_calls(mocked)) == 2


def test_a_second_401_is_raised_as_an_auth_error(mocked):
    mocked.post(TOKEN_URL, json=token_body(make_jwt(future(), "one")))
    mocked.post(TOKEN_URL, json=token_body(make_jwt(future(), "two")))
    mocked.get(LISTS, status=401, json={"error_key": "unauthorized", "error_message": "Unauthorized"})

    with pytest.raises(ConstantContactAuthError) as err:
        fast_hook(MemoryTokenStore()).request("GET", "/contact_lists")
    assert err.value.status == 401
    assert len(api_calls(mocked)) == 2
    assert len(token_calls(mocked)) == 2


# ------------------------------------------------------------------------------ rotating tokens
class RecordingStore(MemoryTokenStore):
    """A store that logs its saves into a shared event list (to prove ordering)."""

    def __init__(self, events: list, record: TokenRecord | None = None) -> None:
        super().__init__(record)
        self.events = events

    def save(self, record: TokenRecord) -> None:
        self.events.append(("save", record.refresh_token, record.access_token))
        super().save(record)


def test_rotated_refresh_token_is_persisted_before_the_new_access_token_is_used(mocked):
    events: list = []
    access = make_jwt(future(), "rotated")
    mocked.post(TOKEN_URL, json=token_body(access, refresh_token="refresh-token-1"))

    def api(request):
        events.append(("api", request.headers["Authorization"]))
        return 200, {}, json.dumps({"lists": []})

    mocked.add_callback(responses.GET, LISTS, callback=api)
    store = RecordingStore(events)

    fast_hook(store).request("GET", "/contact_lists")

    assert events == [("save", "refresh-token-1", access), ("api", f"Bearer {access}")]
    saved = store.record
    assert saved.origin == lineage_origin(CLIENT_ID, REFRESH_TOKEN)
    assert saved.expires_at > time.time() + 86000


def test_stored_refresh_token_is_preferred_over_the_connections(mocked):
    store = MemoryTokenStore(
        record("refresh-token-7", make_jwt(time.time() - 10, "expired"), time.time() - 10)
    )
    mocked.post(TOKEN_URL, json=token_body(make_jwt(future(), "a8"), refresh_token="refresh-token-8"))

    fast_hook(store).tokens.access_token()

    assert parse_qs(token_calls(mocked)[0].request.body)["refresh_token"] == ["refresh-token-7"]
    assert store.record.refresh_token == "refresh-token-8"


def test_a_valid_stored_access_token_is_reused_without_refreshing(mocked):
    shared = make_jwt(future(), "from-another-task")
    store = MemoryTokenStore(record("refresh-token-3", shared, future()))
    mocked.get(LISTS, json={"lists": []})

    fast_hook(store).request("GET", "/contact_lists")

    assert token_calls(mocked) == []
    assert api_calls(mocked)[0].request.headers["Authorization"] == f"Bearer {shared}"


def test_a_record_of_another_lineage_is_ignored(mocked):
    """After re-authorisation the connection holds a new refresh token: the old record is stale."""
    stale = record("refresh-token-old", make_jwt(future(), "old-lineage"), future())
    stale.origin = lineage_origin(CLIENT_ID, "a-previous-refresh-token")
    store = MemoryTokenStore(stale)
    mocked.post(TOKEN_URL, json=token_body(make_jwt(future(), "fresh")))

    fast_hook(store).tokens.access_token()

    assert parse_qs(token_calls(mocked)[0].request.body)["refresh_token"] == [REFRESH_TOKEN]


def test_long_lived_refresh_tokens_write_nothing(mocked):
    mocked.post(TOKEN_URL, json=token_body(make_jwt(future(), "a"), refresh_token=REFRESH_TOKEN))
    mocked.post(
        TOKEN_URL, json={k: v for k, v in token_body(make_jwt(future(), "b")).items() if k != "refresh_token"}
    )
    store = MemoryTokenStore()

    hook = fast_hook(store)
    hook.tokens.access_token()
    _tokens.clear_process_cache()
    hook.tokens.access_token()

    assert len(token_calls(mocked)) == 2
    assert store.saves == []


def test_invalid_grant_after_another_task_rotated_is_recovered(mocked):
    """Our refresh token was used by a concurrent task: adopt the tokens it stored."""
    store = MemoryTokenStore(record("refresh-token-1", make_jwt(time.time() - 5, "expired"), time.time() - 5))
    theirs = make_jwt(future(), "theirs")

    def token(request):
        # The other task rotated refresh-token-1 -> refresh-token-2 an instant before us.
        store.record = record("refresh-token-2", theirs, future())
        return (
            400,
            {},
            json.dumps({"error": "invalid_grant", "error_description": "The refresh token is invalid"}),
        )

    mocked.add_callback(responses.POST, TOKEN_URL, callback=token)
    mocked.get(LISTS, json={"lists": []})

    fast_hook(store).request("GET", "/contact_lists")

    assert len(token_calls(mocked)) == 1
    assert api_calls(mocked)[0].request.headers["Authorization"] == f"Bearer {theirs}"


def test_invalid_grant_recovery_refreshes_with_the_rotated_token_when_its_access_token_expired(mocked):
    store = MemoryTokenStore(record("refresh-token-1", "expired-1", time.time() - 5))
    fresh = make_jwt(future(), "fresh")
    seen: list[str] = []

    def token(request):
        refresh_token = parse_qs(request.body)["refresh_token"][0]
        seen.append(refresh_token)
        if refresh_token == "refresh-token-1":
            store.record = record("refresh-token-2", "expired-2", time.time() - 1)
            return 400, {}, json.dumps({"error": "invalid_grant", "error_description": "used"})
        return 200, {}, json.dumps(token_body(fresh, refresh_token="refresh-token-3"))

    mocked.add_callback(responses.POST, TOKEN_URL, callback=token)

    assert fast_hook(store).tokens.access_token() == fresh
    assert seen == ["refresh-token-1", "refresh-token-2"]
    assert store.record.refresh_token == "refresh-token-3"


def test_invalid_grant_after_revocation_fails_with_reauthorisation_instructions(mocked):
    mocked.post(TOKEN_URL, status=400, json={"error": "invalid_grant", "error_description": "revoked"})

    with pytest.raises(ConstantContactReauthorizationRequired) as err:
        fast_hook(MemoryTokenStore()).request("GET", "/contact_lists")

    message = str(err.value)
    assert "run `constantcontact-auth`" in message
    assert "into the connection's refresh_token field" in message
    assert "constantcontact_cc_test_oauth_tokens" in message
    assert "Nothing needs deleting" in message  # a new connection token replaces the old record
    assert "could not be read" not in message
    assert err.value.error_key == "invalid_grant"
    assert REFRESH_TOKEN not in message


def test_invalid_grant_when_the_store_cannot_be_read_says_so(mocked):
    """An unreadable store may hide another task's rotation: the message must not blame the token only."""

    class UnreadableStore(MemoryTokenStore):
        def load(self, client_id, origin):
            raise ConnectionError("metadata DB unreachable")

    mocked.post(TOKEN_URL, status=400, json={"error": "invalid_grant", "error_description": "used"})

    with pytest.raises(ConstantContactReauthorizationRequired) as err:
        fast_hook(UnreadableStore()).tokens.access_token()

    message = str(err.value)
    assert "run `constantcontact-auth`" in message
    assert "could not be read (ConnectionError)" in message
    assert "retrying may succeed without re-authorising" in message


def test_a_rotation_that_cannot_be_saved_fails_instead_of_losing_the_token(mocked):
    class BrokenStore(MemoryTokenStore):
        def save(self, record):
            raise RuntimeError("database is locked")

    mocked.post(TOKEN_URL, json=token_body(make_jwt(future(), "a"), refresh_token="refresh-token-new"))
    mocked.get(LISTS, json={"lists": []})

    with pytest.raises(ConstantContactAuthError, match="could not be saved"):
        fast_hook(BrokenStore()).request("GET", "/contact_lists")
    assert api_calls(mocked) == []


def test_invalid_client_is_reported_as_bad_credentials(mocked):
    mocked.post(TOKEN_URL, status=401, json={"error": "invalid_client", "error_description": "Client failed"})

    with pytest.raises(ConstantContactAuthError) as err:
        fast_hook(MemoryTokenStore()).tokens.access_token()
    assert not isinstance(err.value, ConstantContactReauthorizationRequired)
    assert err.value.error_key == "invalid_client"
    assert "Client secret" in str(err.value)


def test_token_endpoint_throttling_is_waited_out(mocked):
    mocked.post(TOKEN_URL, status=429, json={"error_key": "throttled", "error_message": "Too Many Requests"})
    mocked.post(TOKEN_URL, json=token_body(make_jwt(future(), "ok")))

    assert fast_hook(MemoryTokenStore()).tokens.access_token()
    assert len(token_calls(mocked)) == 2


def test_missing_connection_fields_are_named():
    hook = fast_hook(MemoryTokenStore(), refresh_token="")
    with pytest.raises(ConstantContactAuthError, match=r"refresh_token \(extra\).*constantcontact-auth"):
        hook.tokens.access_token()


# ------------------------------------------------------------------------------ HTTP behaviour
@pytest.fixture
def authed(mocked):
    """Mocked HTTP with a working token endpoint."""
    mocked.post(TOKEN_URL, json=token_body(make_jwt(future(), "tok")))
    return mocked


def test_throttling_is_retried(authed):
    throttled = {"error_key": "throttled", "error_message": "Too Many Requests"}
    authed.get(LISTS, status=429, json=throttled)
    authed.get(LISTS, status=429, json=throttled)
    authed.get(LISTS, json={"lists": []})

    assert fast_hook(MemoryTokenStore(), max_attempts=5).request("GET", "/contact_lists") == {"lists": []}
    assert len(api_calls(authed)) == 3


def test_throttling_honours_retry_after(authed, monkeypatch):
    sleeps: list[float] = []
    monkeypatch.setattr("tenacity.nap.time.sleep", sleeps.append)
    authed.get(
        LISTS,
        status=429,
        headers={"Retry-After": "2"},
        json={"error_key": "throttled", "error_message": "Too Many Requests"},
    )
    authed.get(LISTS, json={"lists": []})

    fast_hook(MemoryTokenStore()).request("GET", "/contact_lists")

    assert sleeps == [2.0]


def test_throttling_past_the_retry_budget_raises_a_rate_limit_error(authed):
    authed.get(LISTS, status=429, json={"error_key": "throttled", "error_message": "Too Many Requests"})

    with pytest.raises(ConstantContactRateLimitError) as err:
        fast_hook(MemoryTokenStore(), max_attempts=3).request("GET", "/contact_lists")
    assert not isinstance(err.value, ConstantContactQuotaExceededError)
    assert "gave up after 3 attempts" in str(err.value)


def test_quota_exceeded_fails_at_once_naming_the_daily_limit_and_reset(authed):
    authed.get(LISTS, status=429, json={"error_key": "quota_exceeded", "error_message": "Limit Exceeded"})

    with pytest.raises(ConstantContactQuotaExceededError) as err:
        fast_hook(MemoryTokenStore(), max_attempts=5).request("GET", "/contact_lists")

    assert len(api_calls(authed)) == 1
    message = str(err.value)
    assert "10,000" in message
    assert "00:00 UTC" in message
    assert err.value.status == 429
    assert err.value.error_key == "quota_exceeded"


def test_quota_reset_text_counts_down_to_midnight_utc():
    now = datetime(2026, 3, 1, 21, 30, tzinfo=timezone.utc)
    assert _http.quota_reset_text(now) == "it resets at 00:00 UTC, in 2h 30m"


def test_server_errors_are_retried_then_surfaced(authed):
    authed.get(LISTS, status=503, json=[{"error_key": "server_error", "error_message": "Unavailable"}])

    with pytest.raises(ConstantContactServerError) as err:
        fast_hook(MemoryTokenStore(), max_attempts=3).request("GET", "/contact_lists")

    assert len(api_calls(authed)) == 3
    assert err.value.status == 503
    assert "gave up after 3 attempts" in str(err.value)


def test_a_transient_server_error_is_recovered(authed):
    authed.get(LISTS, status=500, body="oops")
    authed.get(LISTS, json={"lists": []})

    assert fast_hook(MemoryTokenStore()).request("GET", "/contact_lists") == {"lists": []}


def test_connection_errors_are_retried_then_surfaced(authed):
    authed.get(LISTS, body=requests.ConnectionError("refused"))

    with pytest.raises(ConstantContactServerError) as err:
        fast_hook(MemoryTokenStore(), max_attempts=2).request("GET", "/contact_lists")
    assert err.value.status is None
    assert len(api_calls(authed)) == 2


def test_every_request_has_connect_and_read_timeouts(authed, monkeypatch):
    seen = []
    original = requests.Session.request

    def spy(self, method, url, **kwargs):
        seen.append(kwargs.get("timeout"))
        return original(self, method, url, **kwargs)

    monkeypatch.setattr(requests.Session, "request", spy)
    authed.get(LISTS, json={"lists": []})

    fast_hook(MemoryTokenStore()).request("GET", "/contact_lists")

    assert seen == [(10.0, 60.0), (10.0, 60.0)]


# ---------------------------------------------------------------------------------- error shapes
@pytest.mark.parametrize(
    ("status", "body", "error_class", "key", "message"),
    [
        (
            400,
            [{"error_key": "json.field.invalid", "error_message": "#/name: is too long"}],
            ConstantContactValidationError,
            "json.field.invalid",
            "#/name: is too long",
        ),
        (
            409,
            [
                {"error_key": "conflict", "error_message": "List name exists"},
                {"error_key": "other", "error_message": "second"},
            ],
            ConstantContactValidationError,
            "conflict",
            "List name exists; second",
        ),
        (
            403,
            {"error_key": "unauthorized", "error_message": "Insufficient scope"},
            ConstantContactAuthError,
            "unauthorized",
            "Insufficient scope",
        ),
        (
            404,
            {"error": "not_found", "error_description": "No such thing"},
            ConstantContactNotFoundError,
            "not_found",
            "No such thing",
        ),
        (418, "short and stout", ConstantContactError, None, "short and stout"),
    ],
)
def test_each_error_shape_is_parsed(authed, status, body, error_class, key, message):
    kwargs = {"body": body} if isinstance(body, str) else {"json": body}
    authed.post(LISTS, status=status, **kwargs)

    with pytest.raises(error_class) as err:
        fast_hook(MemoryTokenStore()).request("POST", "/contact_lists", json={"name": "x"})

    error = err.value
    assert (error.status, error.method, error.path) == (status, "POST", "/v3/contact_lists")
    assert (error.error_key, error.error_message) == (key, message)
    assert f"HTTP {status}" in str(error)


def test_error_messages_never_echo_email_addresses(authed):
    authed.post(
        f"{API}/activities/contacts_json_import",
        status=400,
        json=[{"error_key": "bad", "error_message": "Invalid email jane.doe@example.com in row 3"}],
    )
    with pytest.raises(ConstantContactValidationError) as err:
        fast_hook(MemoryTokenStore()).import_contacts([{"email": "jane.doe@example.com"}], ["l1"])
    assert "jane.doe@example.com" not in str(err.value)
    assert "<email>" in err.value.error_message


def test_unknown_contact_list_names_the_id_and_where_to_find_ids(authed):
    list_id = "0f6cd6b2-0000-0000-0000-000000000000"
    authed.get(
        f"{LISTS}/{list_id}", status=404, json=[{"error_key": "not.found", "error_message": "Not found"}]
    )

    with pytest.raises(ConstantContactNotFoundError) as err:
        fast_hook(MemoryTokenStore()).get_contact_list(list_id)
    assert list_id in str(err.value)
    assert "URL" in str(err.value)
    assert err.value.status == 404


def test_an_unknown_activity_says_how_long_activities_are_kept(authed):
    body = [{"error_key": "not.found", "error_message": "gone"}]
    authed.get(f"{API}/activities/a-1", status=404, json=body)

    with pytest.raises(ConstantContactNotFoundError) as err:
        fast_hook(MemoryTokenStore()).get_activity("a-1")
    assert "HTTP 404 (not.found: gone)" in str(err.value)
    assert "No activity 'a-1'" in str(err.value)
    assert "10 days" in str(err.value)
    assert (err.value.status, err.value.path, err.value.error_key) == (404, "/v3/activities/a-1", "not.found")


def test_a_not_found_message_is_added_to_any_404_of_request(authed):
    authed.get(f"{API}/things/x", status=404, json=[{"error_key": "not.found", "error_message": "Not found"}])
    authed.get(f"{API}/things/y", status=500, json=[{"error_key": "oops", "error_message": "down"}])
    hook = fast_hook(MemoryTokenStore(), max_attempts=1)

    with pytest.raises(ConstantContactNotFoundError, match=r"HTTP 404 .*\. Look elsewhere\.$"):
        hook.request("GET", "/things/x", not_found_message="Look elsewhere.")
    with pytest.raises(ConstantContactServerError) as err:
        hook.request("GET", "/things/y", not_found_message="Look elsewhere.")
    assert "Look elsewhere" not in str(err.value)


# ---------------------------------------------------------------------------------- API methods
def test_pagination_follows_next_links(authed):
    authed.get(
        LISTS,
        match=[responses.matchers.query_param_matcher({"limit": "500", "name": "News"})],
        json={
            "lists": [{"list_id": "1"}, {"list_id": "2"}],
            "_links": {"next": {"href": "/v3/contact_lists?cursor=c2"}},
        },
    )
    authed.get(
        LISTS,
        match=[responses.matchers.query_param_matcher({"cursor": "c2"})],
        json={"lists": [{"list_id": "3"}], "_links": {}},
    )

    assert [lst["list_id"] for lst in fast_hook(MemoryTokenStore()).iter_contact_lists(name="News")] == [
        "1",
        "2",
        "3",
    ]
    assert len(api_calls(authed)) == 2


def test_find_contact_list_prefers_an_exact_name(authed):
    authed.get(
        LISTS,
        json={"lists": [{"list_id": "1", "name": "newsletter"}, {"list_id": "2", "name": "Newsletter"}]},
    )

    hook = fast_hook(MemoryTokenStore())
    assert hook.find_contact_list("Newsletter")["list_id"] == "2"
    assert hook.find_contact_list("Other") is None


def test_import_contacts_posts_the_documented_body(authed):
    activity = {"activity_id": "act-1", "state": "initialized"}
    authed.post(f"{API}/activities/contacts_json_import", status=201, json=activity)

    result = fast_hook(MemoryTokenStore()).import_contacts(
        [{"email": "a@example.com", "cf:tier": "gold"}], ["l1"]
    )

    assert result == activity
    call = api_calls(authed)[0]
    assert call.request.headers["Content-Type"] == "application/json"
    assert json.loads(call.request.body) == {
        "import_data": [{"email": "a@example.com", "cf:tier": "gold"}],
        "list_ids": ["l1"],
    }


def test_import_bodies_over_the_limit_are_refused_not_truncated(authed):
    with pytest.raises(ValueError, match="silently drop"):
        fast_hook(MemoryTokenStore()).import_contacts_body(b"x" * (MAX_IMPORT_BODY_BYTES + 1))
    assert api_calls(authed) == []


def test_import_contacts_validates_list_count():
    with pytest.raises(ValueError, match="1 to 50 list ids"):
        fast_hook(MemoryTokenStore()).import_contacts([{"email": "a@example.com"}], [])


def test_remove_list_memberships_and_activities(authed):
    authed.post(f"{API}/activities/remove_list_memberships", status=201, json={"activity_id": "rm-1"})
    authed.get(f"{API}/activities/rm-1", json={"activity_id": "rm-1", "state": "completed"})
    authed.get(
        f"{API}/activities",
        match=[responses.matchers.query_param_matcher({"limit": "500", "state": "completed"})],
        json={"activities": [{"activity_id": "rm-1"}]},
    )
    hook = fast_hook(MemoryTokenStore())

    assert hook.remove_list_memberships(["c1", "c2"], ["l1"]) == {"activity_id": "rm-1"}
    assert json.loads(api_calls(authed)[0].request.body) == {
        "source": {"contact_ids": ["c1", "c2"]},
        "list_ids": ["l1"],
    }
    assert hook.get_activity("rm-1")["state"] == "completed"
    assert [a["activity_id"] for a in hook.iter_activities(state="completed")] == ["rm-1"]


def test_iter_contacts_and_custom_fields(authed):
    authed.get(
        f"{API}/contacts",
        match=[responses.matchers.query_param_matcher({"lists": "l1", "limit": "500"})],
        json={"contacts": [{"contact_id": "c1"}], "_links": {"next": {"href": "/v3/contacts?cursor=n"}}},
    )
    authed.get(f"{API}/contacts", json={"contacts": [{"contact_id": "c2"}]})
    authed.get(f"{API}/contact_custom_fields", json={"custom_fields": [{"name": "tier"}]})
    hook = fast_hook(MemoryTokenStore())

    assert [c["contact_id"] for c in hook.iter_contacts(list_id="l1")] == ["c1", "c2"]
    assert hook.get_custom_fields() == [{"name": "tier"}]


def test_links_to_another_host_are_refused():
    with pytest.raises(ValueError, match="another host|other than"):
        fast_hook(MemoryTokenStore())._url("https://evil.example.test/v3/contact_lists")


def test_non_json_success_points_at_the_api_base_url(authed):
    authed.get(LISTS, body="<html>hello</html>", content_type="text/html")
    with pytest.raises(ConstantContactError, match="api_base_url"):
        fast_hook(MemoryTokenStore()).request("GET", "/contact_lists")


@pytest.mark.parametrize(
    ("answer", "call"),
    [
        ({"status": 204}, lambda hook: hook.get_activity("a1")),
        ({"json": []}, lambda hook: hook.get_contact_list("l1")),
        ({"status": 201, "json": "created"}, lambda hook: hook.create_contact_list("VIP")),
    ],
)
def test_a_call_answered_without_a_json_object_fails_naming_the_api_base_url(authed, answer, call):
    """A call the API answers with an object never hands its caller None, a list or a string."""
    for method, url in (("GET", f"{API}/activities/a1"), ("GET", f"{LISTS}/l1"), ("POST", LISTS)):
        authed.add(method, url, **answer)
    with pytest.raises(ConstantContactError, match=r"answered with no JSON object .*api_base_url"):
        call(fast_hook(MemoryTokenStore()))


# -------------------------------------------------------------------------------------- pacing
def test_pacer_spaces_requests_across_threads():
    pacer = _http.RequestPacer()
    stamps: list[float] = []

    def worker():
        for _ in range(3):
            pacer.wait(20.0)
            stamps.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(3)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(stamps) == 9
    assert time.monotonic() - start >= 8 / 20.0 - 0.01
    gaps = [b - a for a, b in zip(sorted(stamps), sorted(stamps)[1:], strict=False)]
    assert min(gaps) > 0.03


def test_hooks_of_one_application_share_a_pacer(authed):
    authed.get(LISTS, json={"lists": []})
    start = time.monotonic()
    for _ in range(3):
        fast_hook(MemoryTokenStore(), max_requests_per_second=10).request("GET", "/contact_lists")
    # three API calls from three hooks at 10/s: at least two 0.1 s gaps
    assert time.monotonic() - start >= 0.19


def test_a_derived_client_shares_the_session_but_changes_nothing_of_the_original():
    pacing = _http.Pacing.shared("api:derive-test", 4.0)
    client = _http.HttpClient(timeout=(1.0, 1.0), policy=_http.RetryPolicy(), user_agent="t", pacing=pacing)

    fast = client.derive(policy=_http.RetryPolicy(max_attempts=2))
    token = client.derive(pacing=_http.Pacing.shared("token:derive-test", 0.8))

    assert fast.session is client.session is token.session
    assert (client.policy.max_attempts, fast.policy.max_attempts) == (6, 2)
    assert fast.pacing is client.pacing is pacing
    assert token.pacing.rate == 0.8
    assert token.policy is client.policy


def test_invalid_requests_per_second_is_rejected():
    with pytest.raises(ValueError, match="max_requests_per_second"):
        fast_hook(MemoryTokenStore(), max_requests_per_second="fast").request("GET", "/contact_lists")


# ------------------------------------------------------------------------------------- secrets
def test_no_secret_or_email_in_logs_or_output(mocked, caplog, capsys):
    # Secrets unique to this test: the masker is process-global, so shared constants registered
    # by earlier tests would be hidden even if this hook never registered them.
    client_secret, refresh_token = unique_secret(), unique_secret()
    rotated_1, rotated_2 = unique_secret(), unique_secret()
    first, second = make_jwt(future(), unique_secret()), make_jwt(future(), unique_secret())
    caplog.set_level(logging.DEBUG)
    mocked.post(TOKEN_URL, json=token_body(first, refresh_token=rotated_1))
    mocked.post(TOKEN_URL, json=token_body(second, refresh_token=rotated_2))
    mocked.get(LISTS, status=401, json={"error_key": "unauthorized", "error_message": "Unauthorized"})
    mocked.get(LISTS, status=503, json=[{"error_key": "x", "error_message": "down"}])
    mocked.get(LISTS, json={"lists": []})
    mocked.get(f"{API}/contacts", json={"contacts": []})
    mocked.post(
        f"{API}/activities/contacts_json_import",
        status=400,
        json=[{"error_key": "bad", "error_message": "bad email x.person@example.org"}],
    )
    hook = fast_hook(MemoryTokenStore(), client_secret=client_secret, refresh_token=refresh_token)

    hook.request("GET", "/contact_lists")
    list(hook.iter_contacts(email="x.person@example.org"))
    with pytest.raises(ConstantContactValidationError) as err:
        hook.import_contacts([{"email": "x.person@example.org"}], ["l1"])

    out = capsys.readouterr()
    text = caplog.text + out.out + out.err + str(err.value)
    assert "refreshing the access token" in caplog.text  # the log did capture the hook's lines
    assert len(token_calls(mocked)) == 2  # both rotated tokens really went through the hook
    for secret in (first, second, rotated_1, rotated_2, refresh_token, client_secret, "x.person@example.org"):
        assert secret not in text


def test_tokens_are_registered_with_the_secrets_masker(mocked):
    from tests.airflow_compat import redact

    client_secret, refresh_token = unique_secret(), unique_secret()
    rotated = unique_secret()
    access = make_jwt(future(), unique_secret())
    for secret in (access, rotated, refresh_token, client_secret):
        assert secret in redact(f"value: {secret}")  # not masked before the hook sees it
    mocked.post(TOKEN_URL, json=token_body(access, refresh_token=rotated))

    hook = fast_hook(MemoryTokenStore(), client_secret=client_secret, refresh_token=refresh_token)
    hook.tokens.access_token()

    for secret in (access, rotated, refresh_token, client_secret):
        assert secret not in redact(f"value: {secret}")


def test_long_lived_tokens_never_reach_the_store_even_through_the_401_path(mocked):
    store = MemoryTokenStore()
    mocked.post(TOKEN_URL, json=token_body(make_jwt(future(), "a")))
    mocked.post(TOKEN_URL, json=token_body(make_jwt(future(), "b")))
    mocked.get(LISTS, status=401, json={"error_key": "unauthorized", "error_message": "Unauthorized"})
    mocked.get(LISTS, json={"lists": []})

    fast_hook(store).request("GET", "/contact_lists")

    assert store.saves == []


def test_parse_error_body_handles_empty_and_odd_bodies():
    response = requests.Response()
    response.status_code = 502
    response._content = b""
    assert _http.parse_error_body(response) == (None, None)
    response._content = b'{"unexpected": true}'
    assert _http.parse_error_body(response) == (None, '{"unexpected": true}')


def test_concurrent_threads_refresh_a_rotating_token_only_once(mocked):
    started = threading.Barrier(4)
    mocked.post(TOKEN_URL, json=token_body(make_jwt(future(), "one"), refresh_token="refresh-token-r1"))
    mocked.post(TOKEN_URL, status=400, json={"error": "invalid_grant", "error_description": "reused"})
    store = MemoryTokenStore()
    results: list[str] = []

    def worker():
        hook = fast_hook(store)
        started.wait()
        results.append(hook.tokens.access_token())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(token_calls(mocked)) == 1
    assert len(set(results)) == 1
    assert len(results) == 4


def test_test_connection_reports_a_403_as_missing_scope_or_privilege(mocked):
    mocked.post(TOKEN_URL, json={k: v for k, v in token_body(make_jwt(future())).items() if k != "scope"})
    mocked.get(LISTS, status=403, json={"error_key": "unauthorized", "error_message": "Forbidden"})

    ok, message = fast_hook(MemoryTokenStore()).test_connection()

    assert not ok
    assert "403" in message
    assert "contact_data" in message


def test_test_connection_reports_a_non_api_base_url(mocked):
    mocked.post(TOKEN_URL, json=token_body(make_jwt(future())))
    mocked.get(LISTS, body="<html>welcome</html>", content_type="text/html")

    ok, message = fast_hook(MemoryTokenStore()).test_connection()

    assert not ok
    assert "api_base_url" in message


def test_test_connection_fails_fast_on_server_errors(mocked):
    mocked.post(TOKEN_URL, json=token_body(make_jwt(future())))
    mocked.get(LISTS, status=503, json=[{"error_key": "down", "error_message": "down"}])

    hook = fast_hook(MemoryTokenStore(), max_attempts=6)
    ok, message = hook.test_connection()

    assert not ok
    assert "503" in message
    assert len(api_calls(mocked)) == 2

    # Afterwards the hook has its full retry budget again.
    with pytest.raises(ConstantContactError, match="503"):
        hook.request("GET", "/contact_lists")
    assert len(api_calls(mocked)) == 2 + 6


def test_a_body_cut_short_is_retried(authed):
    authed.get(LISTS, body=requests.exceptions.ChunkedEncodingError("cut"))
    authed.get(LISTS, json={"lists": []})

    assert fast_hook(MemoryTokenStore()).request("GET", "/contact_lists") == {"lists": []}


def test_other_request_errors_become_constant_contact_errors(authed):
    authed.get(LISTS, body=requests.exceptions.TooManyRedirects("loop"))

    with pytest.raises(ConstantContactError, match="TooManyRedirects") as err:
        fast_hook(MemoryTokenStore()).request("GET", "/contact_lists")
    assert len(api_calls(authed)) == 1
    assert err.value.path == "/v3/contact_lists"
