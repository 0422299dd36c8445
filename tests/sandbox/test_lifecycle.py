"""Start/stop, binding, concurrency and the pytest fixtures themselves."""

from __future__ import annotations

import json
import threading

import pytest
import requests

from airflow_provider_constantcontact.sandbox import ConstantContactSandbox
from tests.sandbox.conftest import api_session, import_body


def test_context_manager_binds_localhost_on_a_free_port_and_stops_cleanly():
    with ConstantContactSandbox(token_rate_limit=0) as sandbox:
        assert sandbox.base_url.startswith("http://127.0.0.1:")
        assert sandbox.port > 0
        assert sandbox.api_base_url == sandbox.base_url + "/v3"
        assert sandbox.token_url == sandbox.base_url + "/oauth2/default/v1/token"
        assert sandbox.authorize_url == sandbox.base_url + "/oauth2/default/v1/authorize"
        assert sandbox.device_authorize_url == sandbox.base_url + "/oauth2/default/v1/device/authorize"
        session = api_session(sandbox)  # keeps a connection alive across stop()
        assert session.get(sandbox.api_base_url + "/contact_lists", timeout=5).status_code == 200
        url = sandbox.api_base_url
        before = {t.name for t in threading.enumerate()}
        assert "cc-sandbox" in before
    assert not any(t.name.startswith("cc-sandbox") for t in threading.enumerate())
    with pytest.raises(requests.ConnectionError):
        session.get(url + "/contact_lists", timeout=2)


def test_connection_dict_matches_the_connection_type(sandbox):
    conn = json.loads(sandbox.connection_json())
    assert conn == sandbox.connection_dict()
    assert conn == {
        "conn_type": "constantcontact",
        "login": sandbox.client_id,
        "password": sandbox.client_secret,
        "extra": {
            "refresh_token": sandbox.refresh_token,
            "api_base_url": sandbox.api_base_url,
            "token_url": sandbox.token_url,
            "max_requests_per_second": 0,
        },
    }


def test_fixture_seeds_newsletter_and_loyalty_tier(constantcontact_sandbox):
    assert set(constantcontact_sandbox.list_ids) == {"Newsletter"}
    assert set(constantcontact_sandbox.custom_field_ids) == {"loyalty_tier"}
    assert constantcontact_sandbox.rate_limit == 0
    assert constantcontact_sandbox.token_rate_limit == 0
    assert constantcontact_sandbox.processing_rate is None


def test_factory_starts_independent_sandboxes(constantcontact_sandbox_factory):
    one = constantcontact_sandbox_factory(lists=["A"], client_id="one", client_secret="s1")
    two = constantcontact_sandbox_factory(lists=["B"])
    assert one.port != two.port
    assert one.client_id == "one"
    assert set(one.list_ids) == {"A"}
    assert set(two.list_ids) == {"B"}
    assert one.rate_limit == 4
    assert one.daily_quota == 10000


def test_concurrent_imports_from_many_threads_are_all_applied(sandbox):
    list_id = sandbox.list_ids["Newsletter"]
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            session = api_session(sandbox)
            for batch in range(5):
                contacts = [{"email": f"t{n}-{batch}-{i}@example.com"} for i in range(200)]
                response = session.post(
                    sandbox.api_base_url + "/activities/contacts_json_import",
                    data=import_body(contacts, [list_id]),
                    headers={"Content-Type": "application/json"},
                    timeout=30,
                )
                assert response.status_code == 201
            session.close()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(sandbox.list_members(list_id)) == 8 * 5 * 200
