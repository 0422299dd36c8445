"""Rate limits, the daily quota, injected faults and the request log, over real HTTP."""

from __future__ import annotations

import time

import pytest
import requests

from tests.sandbox.conftest import api_session

THROTTLED = {"error_key": "throttled", "error_message": "Too Many Requests"}
QUOTA = {"error_key": "quota_exceeded", "error_message": "Limit Exceeded"}


def test_burst_over_the_rate_limit_gets_the_exact_throttled_body(constantcontact_sandbox_factory):
    sandbox = constantcontact_sandbox_factory(rate_limit=4, token_rate_limit=0)
    api = api_session(sandbox)
    responses = [api.get(sandbox.api_base_url + "/contact_lists", timeout=5) for _ in range(10)]
    statuses = [r.status_code for r in responses]
    assert statuses[:4] == [200] * 4
    assert 429 in statuses
    assert statuses.count(200) <= 6  # a 4/s bucket refills only a little during the burst
    for response in responses:
        if response.status_code == 429:
            assert response.json() == THROTTLED
    assert sandbox.connection_dict()["extra"]["max_requests_per_second"] == 4


def test_rate_limit_off_at_zero(sandbox, api):
    assert sandbox.rate_limit == 0
    statuses = {api.get(sandbox.api_base_url + "/contact_lists", timeout=5).status_code for _ in range(20)}
    assert statuses == {200}
    assert sandbox.connection_dict()["extra"]["max_requests_per_second"] == 0


def test_daily_quota_gets_the_exact_quota_exceeded_body(constantcontact_sandbox_factory):
    sandbox = constantcontact_sandbox_factory(rate_limit=0, token_rate_limit=0, daily_quota=3)
    api = api_session(sandbox)
    statuses = [api.get(sandbox.api_base_url + "/contact_lists", timeout=5) for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    assert statuses[-1].json() == QUOTA


def test_exhaust_daily_quota(sandbox, api):
    sandbox.exhaust_daily_quota()
    response = api.get(sandbox.api_base_url + "/contact_lists", timeout=5)
    assert response.status_code == 429
    assert response.json() == QUOTA


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (500, [{"error_key": "server_error", "error_message": "Internal Server Error"}]),
        (503, [{"error_key": "service_unavailable", "error_message": "Service Unavailable"}]),
        (429, THROTTLED),
    ],
)
def test_fail_next_answers_the_next_n_requests_with_the_status(sandbox, api, status, expected):
    sandbox.fail_next(2, status=status)
    url = sandbox.api_base_url + "/contact_lists"
    first, second, third = (api.get(url, timeout=5) for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (status, status, 200)
    assert first.json() == expected


def test_fail_next_with_a_path_prefix_only_hits_matching_requests(sandbox, api):
    sandbox.fail_next(1, status=503, path_prefix="/v3/activities")
    assert api.get(sandbox.api_base_url + "/contact_lists", timeout=5).status_code == 200
    assert api.get(sandbox.api_base_url + "/activities", timeout=5).status_code == 503
    assert api.get(sandbox.api_base_url + "/activities", timeout=5).status_code == 200
    sandbox.fail_next(1, status=500, path_prefix="/oauth2")
    token = requests.post(
        sandbox.token_url,
        auth=(sandbox.client_id, sandbox.client_secret),
        data={"grant_type": "refresh_token", "refresh_token": sandbox.refresh_token},
        timeout=5,
    )
    assert token.status_code == 500


def refresh(sandbox) -> requests.Response:
    """A refresh grant with the seeded token."""
    return requests.post(
        sandbox.token_url,
        auth=(sandbox.client_id, sandbox.client_secret),
        data={"grant_type": "refresh_token", "refresh_token": sandbox.refresh_token},
        timeout=5,
    )


@pytest.mark.parametrize(
    ("status", "error"),
    [(503, "temporarily_unavailable"), (500, "server_error"), (502, "server_error")],
)
def test_faults_on_oauth_paths_answer_in_the_oauth_error_shape(sandbox, api, status, error):
    sandbox.fail_next(2, status=status, path_prefix="/oauth2")
    token = refresh(sandbox)
    device = requests.post(sandbox.device_authorize_url, data={"client_id": sandbox.client_id}, timeout=5)
    for response in (token, device):
        assert response.status_code == status
        body = response.json()
        assert set(body) == {"error", "error_description"}
        assert body["error"] == error
        assert body["error_description"]
    assert refresh(sandbox).status_code == 200
    # API faults keep the API's array shape
    sandbox.fail_next(1, status=status)
    api_body = api.get(sandbox.api_base_url + "/contact_lists", timeout=5).json()
    assert isinstance(api_body, list)
    assert set(api_body[0]) == {"error_key", "error_message"}


def test_a_429_fault_on_the_token_endpoint_looks_like_its_own_rate_limit(constantcontact_sandbox_factory):
    sandbox = constantcontact_sandbox_factory(rate_limit=0, token_rate_limit=1)
    assert refresh(sandbox).status_code == 200
    limited = refresh(sandbox)  # the token endpoint's own ~1 request a second
    assert limited.status_code == 429
    time.sleep(1.1)
    sandbox.fail_next(1, status=429, path_prefix="/oauth2")
    injected = refresh(sandbox)
    assert injected.status_code == 429
    assert injected.json() == limited.json()
    assert limited.json()["error"] == "too_many_requests"
    assert int(injected.headers["X-Rate-Limit-Reset"]) >= int(time.time())


def test_drop_next_closes_the_connection_without_a_response(sandbox, api):
    sandbox.drop_next(1)
    with pytest.raises(requests.ConnectionError):
        api.get(sandbox.api_base_url + "/contact_lists", timeout=5)
    assert api.get(sandbox.api_base_url + "/contact_lists", timeout=5).status_code == 200
    assert [entry.status for entry in sandbox.request_log][-2:] == [0, 200]


def test_request_log_records_method_path_query_status_and_body_size(sandbox, api):
    sandbox.clear_request_log()
    api.get(sandbox.api_base_url + "/contact_lists", params={"limit": 5}, timeout=5)
    api.post(sandbox.api_base_url + "/contact_lists", json={"name": "Logged"}, timeout=5)
    requests.get(sandbox.api_base_url + "/contact_lists", timeout=5)
    log = sandbox.request_log
    assert [(e.method, e.path, e.status) for e in log] == [
        ("GET", "/v3/contact_lists", 200),
        ("POST", "/v3/contact_lists", 201),
        ("GET", "/v3/contact_lists", 401),
    ]
    assert log[0].query == {"limit": "5"}
    assert log[0].body_bytes == 0
    assert log[1].body_bytes == len(b'{"name": "Logged"}')
    assert log[0].client_id == sandbox.client_id
    assert log[2].client_id is None


def test_daily_quota_resets_at_utc_midnight(monkeypatch):
    from airflow_provider_constantcontact.sandbox import limits

    monkeypatch.setattr(limits, "_utc_day", lambda: "2026-01-01")
    quota = limits.DailyQuota(2)
    assert [quota.allow("c"), quota.allow("c"), quota.allow("c")] == [True, True, False]
    assert quota.allow("other-client")
    quota.exhaust()
    assert not quota.allow("other-client")
    monkeypatch.setattr(limits, "_utc_day", lambda: "2026-01-02")
    assert quota.allow("c")
    assert quota.used("c") == 1
