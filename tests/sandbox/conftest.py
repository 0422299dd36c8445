"""Helpers for the sandbox contract tests: authenticated sessions over real HTTP.

The ``sandbox`` fixture itself is shared by every test folder: see ``tests/conftest.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from airflow_provider_constantcontact.sandbox import ConstantContactSandbox


def refresh(
    sandbox: ConstantContactSandbox, refresh_token: str | None = None, **kwargs: Any
) -> requests.Response:
    """POST a refresh grant with Basic client auth."""
    return requests.post(
        sandbox.token_url,
        auth=kwargs.pop("auth", (sandbox.client_id, sandbox.client_secret)),
        data={"grant_type": "refresh_token", "refresh_token": refresh_token or sandbox.refresh_token},
        timeout=10,
        **kwargs,
    )


def api_session(sandbox: ConstantContactSandbox) -> requests.Session:
    """A session holding a fresh access token for ``sandbox``."""
    response = refresh(sandbox)
    response.raise_for_status()
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
    return session


def post_json(session: requests.Session, url: str, payload: Any) -> requests.Response:
    """POST a JSON body."""
    return session.post(url, json=payload, timeout=30)


def import_body(contacts: list[dict[str, Any]], list_ids: list[str]) -> bytes:
    """An encoded contacts_json_import body."""
    return json.dumps({"import_data": contacts, "list_ids": list_ids}).encode()


@pytest.fixture
def api(sandbox: ConstantContactSandbox) -> Iterator[requests.Session]:
    """An authenticated session against the default sandbox."""
    session = api_session(sandbox)
    yield session
    session.close()


@pytest.fixture
def v3(sandbox: ConstantContactSandbox) -> Callable[[str], str]:
    """Absolute URL of an API path: ``v3("/contact_lists")``."""
    return lambda path: sandbox.api_base_url + path
