"""OAuth2 contract: refresh (long-lived and rotating), authorization code + PKCE, device flow, 401s."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from airflow_provider_constantcontact.sandbox import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_REFRESH_TOKEN,
)
from tests.sandbox.conftest import refresh

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
UNAUTHORIZED = {"error_key": "unauthorized", "error_message": "Unauthorized"}


def jwt_claims(token: str) -> dict:
    header, payload, signature = token.split(".")
    assert signature
    assert json.loads(base64.urlsafe_b64decode(header + "==="))["alg"]
    return json.loads(base64.urlsafe_b64decode(payload + "==="))


def test_refresh_grant_returns_a_jwt_with_exp_and_the_same_long_lived_refresh_token(sandbox):
    assert (sandbox.client_id, sandbox.client_secret, sandbox.refresh_token) == (
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        DEFAULT_REFRESH_TOKEN,
    )
    response = refresh(sandbox)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope", "refresh_token", "id_token"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 86400
    assert body["refresh_token"] == DEFAULT_REFRESH_TOKEN
    assert "contact_data" in body["scope"].split()
    claims = jwt_claims(body["access_token"])
    assert abs(claims["exp"] - (time.time() + 86400)) < 5
    assert claims["cid"] == DEFAULT_CLIENT_ID
    jwt_claims(body["id_token"])
    # the long-lived refresh token keeps working
    assert refresh(sandbox).status_code == 200


def test_wrong_client_secret_is_invalid_client(sandbox):
    response = refresh(sandbox, auth=(sandbox.client_id, "nope"))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    no_auth = requests.post(
        sandbox.token_url,
        data={"grant_type": "refresh_token", "refresh_token": sandbox.refresh_token},
        timeout=5,
    )
    assert no_auth.status_code == 401
    assert no_auth.json()["error"] == "invalid_client"


def test_unknown_refresh_token_is_invalid_grant(sandbox):
    response = refresh(sandbox, "not-a-token")
    assert response.status_code == 400
    assert set(response.json()) == {"error", "error_description"}
    assert response.json()["error"] == "invalid_grant"


def test_unsupported_grant_type(sandbox):
    response = requests.post(
        sandbox.token_url,
        auth=(sandbox.client_id, sandbox.client_secret),
        data={"grant_type": "password"},
        timeout=5,
    )
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


def test_rotation_invalidates_every_earlier_refresh_token(constantcontact_sandbox_factory):
    sandbox = constantcontact_sandbox_factory(rotating_refresh_tokens=True, token_rate_limit=0)
    first = sandbox.refresh_token
    response = refresh(sandbox, first)
    second = response.json()["refresh_token"]
    assert second != first
    assert sandbox.refresh_token == second
    reused = refresh(sandbox, first)
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    third = refresh(sandbox, second).json()["refresh_token"]
    assert refresh(sandbox, second).json()["error"] == "invalid_grant"
    assert refresh(sandbox, first).json()["error"] == "invalid_grant"
    assert sandbox.refresh_token == third
    assert sandbox.connection_dict()["extra"]["refresh_token"] == third
    assert refresh(sandbox, third).status_code == 200


def test_revoked_refresh_token_is_invalid_grant(sandbox):
    token = sandbox.refresh_token
    assert refresh(sandbox, token).status_code == 200
    sandbox.revoke_refresh_token()
    response = refresh(sandbox, token)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_token_endpoint_allows_about_one_request_a_second(constantcontact_sandbox_factory):
    sandbox = constantcontact_sandbox_factory(token_rate_limit=1.0)
    assert refresh(sandbox).status_code == 200
    limited = refresh(sandbox)
    assert limited.status_code == 429
    assert limited.json()["error"] == "too_many_requests"
    time.sleep(1.05)
    assert refresh(sandbox).status_code == 200


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer unknown.token.value", "Basic abc"],
    ids=["missing", "unknown", "not-bearer"],
)
def test_api_rejects_missing_or_unknown_tokens_with_the_401_object(sandbox, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = requests.get(sandbox.api_base_url + "/contact_lists", headers=headers, timeout=5)
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED


def test_access_tokens_expire_after_their_ttl(constantcontact_sandbox_factory):
    sandbox = constantcontact_sandbox_factory(access_token_ttl=1, token_rate_limit=0, rate_limit=0)
    body = refresh(sandbox).json()
    assert body["expires_in"] == 1
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    assert (
        requests.get(sandbox.api_base_url + "/contact_lists", headers=headers, timeout=5).status_code == 200
    )
    time.sleep(1.1)
    expired = requests.get(sandbox.api_base_url + "/contact_lists", headers=headers, timeout=5)
    assert expired.status_code == 401
    assert expired.json() == UNAUTHORIZED


def test_expire_access_tokens_fault(sandbox, api):
    url = sandbox.api_base_url + "/contact_lists"
    assert api.get(url, timeout=5).status_code == 200
    sandbox.expire_access_tokens()
    response = api.get(url, timeout=5)
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED
    fresh = refresh(sandbox).json()["access_token"]
    assert requests.get(url, headers={"Authorization": f"Bearer {fresh}"}, timeout=5).status_code == 200


def test_token_without_contact_data_scope_is_forbidden(sandbox):
    code = authorize(sandbox, scope="account_read offline_access")
    body = exchange(sandbox, code).json()
    response = requests.get(
        sandbox.api_base_url + "/contact_lists",
        headers={"Authorization": f"Bearer {body['access_token']}"},
        timeout=5,
    )
    assert response.status_code == 403
    assert response.json()[0]["error_key"] == "forbidden"


# -- authorization code + PKCE -----------------------------------------------------------------

REDIRECT_URI = "http://localhost:8000/callback"
VERIFIER = "a-very-long-code-verifier-string-that-is-at-least-43-characters"


def challenge(verifier: str = VERIFIER) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def authorize_response(sandbox, **overrides) -> requests.Response:
    params = {
        "client_id": sandbox.client_id,
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
        "scope": "contact_data offline_access",
        "state": "xyz-state",
        "code_challenge": challenge(),
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    return requests.get(sandbox.authorize_url, params=params, allow_redirects=False, timeout=5)


def redirect_params(response: requests.Response) -> dict[str, str]:
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI
    return {k: v[0] for k, v in parse_qs(location.query).items()}


def authorize(sandbox, **overrides) -> str:
    params = redirect_params(authorize_response(sandbox, **overrides))
    assert params["state"] == "xyz-state"
    return params["code"]


def exchange(sandbox, code: str, *, verifier: str = VERIFIER, redirect_uri: str = REDIRECT_URI, secret=True):
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": verifier,
    }
    if secret:
        return requests.post(
            sandbox.token_url, auth=(sandbox.client_id, sandbox.client_secret), data=data, timeout=5
        )
    return requests.post(sandbox.token_url, data={**data, "client_id": sandbox.client_id}, timeout=5)


def test_authorization_code_with_pkce_issues_tokens_that_work(sandbox):
    code = authorize(sandbox)
    response = exchange(sandbox, code)
    assert response.status_code == 200
    body = response.json()
    assert {"access_token", "refresh_token", "id_token", "expires_in", "scope", "token_type"} <= set(body)
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    assert (
        requests.get(sandbox.api_base_url + "/contact_lists", headers=headers, timeout=5).status_code == 200
    )
    # the new refresh token works; the code is single use
    assert refresh(sandbox, body["refresh_token"]).status_code == 200
    assert exchange(sandbox, code).json()["error"] == "invalid_grant"


def test_public_client_pkce_exchange_without_secret(sandbox):
    response = exchange(sandbox, authorize(sandbox), secret=False)
    assert response.status_code == 200
    assert "refresh_token" in response.json()


def test_pkce_verifier_and_redirect_uri_are_checked(sandbox):
    wrong_verifier = exchange(sandbox, authorize(sandbox), verifier="x" * 50)
    assert wrong_verifier.status_code == 400
    assert wrong_verifier.json()["error"] == "invalid_grant"
    wrong_redirect = exchange(sandbox, authorize(sandbox), redirect_uri="http://localhost:9/other")
    assert wrong_redirect.status_code == 400
    assert wrong_redirect.json()["error"] == "invalid_grant"


def test_no_refresh_token_without_offline_access(sandbox):
    body = exchange(sandbox, authorize(sandbox, scope="contact_data")).json()
    assert "access_token" in body
    assert "refresh_token" not in body


def test_authorize_errors_redirect_or_fail(sandbox):
    sandbox.deny_next_consent()
    denied = redirect_params(authorize_response(sandbox))
    assert denied["error"] == "access_denied"
    assert denied["state"] == "xyz-state"
    assert "code" not in denied
    # only the next consent is denied
    assert "code" in redirect_params(authorize_response(sandbox))
    assert redirect_params(authorize_response(sandbox, scope="bogus"))["error"] == "invalid_scope"
    assert (
        redirect_params(authorize_response(sandbox, code_challenge_method="plain"))["error"]
        == "invalid_request"
    )
    unknown_client = authorize_response(sandbox, client_id="someone-else")
    assert unknown_client.status_code == 400
    assert unknown_client.json()["error"] == "invalid_client"


# -- device flow -------------------------------------------------------------------------------


def device_start(sandbox, scope: str = "contact_data offline_access") -> dict:
    response = requests.post(
        sandbox.device_authorize_url, data={"client_id": sandbox.client_id, "scope": scope}, timeout=5
    )
    assert response.status_code == 200
    return response.json()


def device_poll(sandbox, device_code: str) -> requests.Response:
    return requests.post(
        sandbox.token_url,
        data={"grant_type": DEVICE_GRANT, "device_code": device_code, "client_id": sandbox.client_id},
        timeout=5,
    )


def test_device_flow_pending_then_approved(sandbox):
    start = device_start(sandbox)
    assert set(start) == {
        "device_code",
        "user_code",
        "verification_uri",
        "verification_uri_complete",
        "expires_in",
        "interval",
    }
    assert start["user_code"] in start["verification_uri_complete"]
    pending = device_poll(sandbox, start["device_code"])
    assert pending.status_code == 400
    assert pending.json()["error"] == "authorization_pending"
    sandbox.approve_device(start["user_code"])
    granted = device_poll(sandbox, start["device_code"])
    assert granted.status_code == 200
    assert {"access_token", "refresh_token"} <= set(granted.json())
    assert device_poll(sandbox, start["device_code"]).json()["error"] == "invalid_grant"


def test_device_flow_slow_down_when_polling_faster_than_the_interval(constantcontact_sandbox_factory):
    sandbox = constantcontact_sandbox_factory(device_poll_interval=5, token_rate_limit=0)
    start = device_start(sandbox)
    assert start["interval"] == 5
    assert device_poll(sandbox, start["device_code"]).json()["error"] == "authorization_pending"
    assert device_poll(sandbox, start["device_code"]).json()["error"] == "slow_down"


def test_device_flow_denied_and_expired(constantcontact_sandbox_factory):
    sandbox = constantcontact_sandbox_factory(device_code_ttl=0.3, device_poll_interval=0, token_rate_limit=0)
    denied = device_start(sandbox)
    sandbox.deny_device(denied["user_code"])
    assert device_poll(sandbox, denied["device_code"]).json()["error"] == "access_denied"
    expired = device_start(sandbox)
    assert expired["expires_in"] == 0 or expired["expires_in"] <= 1
    time.sleep(0.35)
    response = device_poll(sandbox, expired["device_code"])
    assert response.status_code == 400
    assert response.json()["error"] == "expired_token"


def test_device_verification_page_approves_like_a_user(sandbox):
    start = device_start(sandbox)
    page = requests.get(start["verification_uri_complete"], timeout=5)
    assert page.status_code == 200
    assert "approved" in page.text
    assert device_poll(sandbox, start["device_code"]).status_code == 200
    sandbox.deny_next_consent()
    other = device_start(sandbox)
    assert "denied" in requests.get(other["verification_uri_complete"], timeout=5).text
    assert device_poll(sandbox, other["device_code"]).json()["error"] == "access_denied"
    assert (
        requests.get(sandbox.base_url + "/activate", params={"user_code": "NOPE-NOPE"}, timeout=5).status_code
        == 400
    )


def test_device_authorize_rejects_unknown_clients_and_scopes(sandbox):
    unknown = requests.post(
        sandbox.device_authorize_url, data={"client_id": "x", "scope": "contact_data"}, timeout=5
    )
    assert unknown.status_code == 401
    assert unknown.json()["error"] == "invalid_client"
    bad_scope = requests.post(
        sandbox.device_authorize_url, data={"client_id": sandbox.client_id, "scope": "everything"}, timeout=5
    )
    assert bad_scope.status_code == 400
    assert bad_scope.json()["error"] == "invalid_scope"


def test_a_device_code_cannot_be_approved_twice(sandbox):
    start = device_start(sandbox)
    sandbox.approve_device(start["user_code"])
    assert device_poll(sandbox, start["device_code"]).status_code == 200
    with pytest.raises(KeyError):
        sandbox.approve_device(start["user_code"])
    page = requests.get(start["verification_uri_complete"], timeout=5)
    assert page.status_code == 400
    assert device_poll(sandbox, start["device_code"]).json()["error"] == "invalid_grant"
