"""The connection form as the UI receives it (``GET /ui/connections/hook_meta``), on every line.

Airflow 3.2+ builds it from ``conn-fields`` in provider info, 3.0 and 3.1 from the hook's
``get_connection_form_widgets``/``get_ui_field_behaviour``: the same service call gives what the
installed version serves, and the assertions hold on each (only the schema's own ``default`` and
the number's JSON type differ, and are checked per line).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from airflow_provider_constantcontact.connection_form import EXTRA_FIELDS
from airflow_provider_constantcontact.constants import DEFAULT_API_BASE_URL, DEFAULT_TOKEN_URL
from airflow_provider_constantcontact.get_provider_info import (
    CLIENT_ID_PLACEHOLDER,
    CLIENT_SECRET_PLACEHOLDER,
)
from tests.airflow_compat import AIRFLOW
from tests.conftest import airflow_env
from tests.hooks.helpers import fast_hook

#: System tests (``-m system``): the form as this Airflow's API server builds it, in a sub-process.
pytestmark = pytest.mark.system

#: Prints the form as the installed Airflow's API server serves it, in a fresh process (the
#: service caches it), optionally with ``wtforms`` made unimportable as on an Airflow without FAB.
HOOK_META_SCRIPT = textwrap.dedent(
    """
    import json, sys
    if sys.argv[1] == "without-wtforms":
        for name in ("wtforms", "flask_appbuilder", "flask_babel"):
            sys.modules[name] = None  # import fails, like a missing package
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService
    metas = [m for m in HookMetaService.hook_meta_data() if m.connection_type == "constantcontact"]
    print(json.dumps([m.model_dump(mode="json") for m in metas]))
    """
)


def served_form(variant: str) -> list[dict]:
    result = subprocess.run(
        [sys.executable, "-c", HOOK_META_SCRIPT, variant],
        env=airflow_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def form_as_user_sees_it(meta: dict) -> dict:
    """What the form shows, whichever way this Airflow built it: labels, help, masking, values."""
    fields = meta["standard_fields"]
    return {
        "standard": {
            name: (field["hidden"], field["title"], field["placeholder"])
            for name, field in fields.items()
            if field is not None
        },
        "extra": {
            name: (
                field["schema"].get("title"),
                field["description"],
                field["schema"].get("format"),
                field["value"],
            )
            for name, field in (meta["extra_fields"] or {}).items()
        },
    }


EXPECTED_FORM = {
    "standard": {
        "url_schema": (True, None, None),
        "host": (True, None, None),
        "port": (True, None, None),
        "login": (False, "Client ID (API key)", CLIENT_ID_PLACEHOLDER),
        "password": (False, "Client secret", CLIENT_SECRET_PLACEHOLDER),
    },
    "extra": {
        field.name: (
            field.label,
            field.description,
            "password" if field.kind == "password" else None,
            field.default,
        )
        for field in EXTRA_FIELDS
    },
}


@pytest.fixture(scope="module")
def hook_meta():
    """The entry the API server's hook_meta route serves for our connection type."""
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    (meta,) = [m for m in HookMetaService.hook_meta_data() if m.connection_type == "constantcontact"]
    return meta


def test_connection_type_is_registered_with_its_hook_and_name(hook_meta):
    assert hook_meta.hook_name == "Constant Contact"
    assert hook_meta.hook_class_name == (
        "airflow_provider_constantcontact.hooks.constantcontact.ConstantContactHook"
    )


def test_login_and_password_are_relabelled_and_unused_fields_hidden(hook_meta):
    fields = hook_meta.standard_fields
    assert (fields.login.title, fields.login.hidden) == ("Client ID (API key)", False)
    assert (fields.password.title, fields.password.hidden) == ("Client secret", False)
    assert fields.host.hidden
    assert fields.port.hidden
    assert fields.url_schema.hidden


def test_client_id_and_secret_placeholders_say_where_the_values_come_from(hook_meta):
    fields = hook_meta.standard_fields
    assert fields.login.placeholder == CLIENT_ID_PLACEHOLDER
    assert "API key" in fields.login.placeholder
    assert fields.password.placeholder == CLIENT_SECRET_PLACEHOLDER
    assert "My Applications → app → Generate Secret" in fields.password.placeholder
    assert "empty for public apps" in fields.password.placeholder


def test_extra_fields_have_labels_defaults_and_a_masked_refresh_token(hook_meta):
    extra = hook_meta.extra_fields
    assert extra["refresh_token"]["schema"]["format"] == "password"
    assert extra["refresh_token"]["schema"]["title"] == "Refresh token"
    assert extra["api_base_url"]["value"] == DEFAULT_API_BASE_URL
    # token_url's default lives in the hook and the description: a schema default would be masked.
    assert "default" not in extra["token_url"]["schema"]
    assert extra["token_url"]["value"] is None
    assert DEFAULT_TOKEN_URL in extra["token_url"]["description"]
    assert extra["max_requests_per_second"]["value"] == 4


@pytest.mark.skipif(AIRFLOW < (3, 2), reason="conn-fields (JSON Schema defaults) exist from Airflow 3.2")
def test_from_airflow_3_2_the_schema_itself_carries_the_defaults_and_a_fractional_rate(hook_meta):
    extra = hook_meta.extra_fields
    assert extra["api_base_url"]["schema"]["default"] == DEFAULT_API_BASE_URL
    assert extra["max_requests_per_second"]["schema"]["default"] == 4
    assert extra["max_requests_per_second"]["schema"]["type"] == ["number", "null"]


@pytest.mark.skipif(AIRFLOW >= (3, 2), reason="Airflow 3.0 and 3.1 draw the form from the hook")
def test_before_airflow_3_2_the_rate_is_a_whole_number_field(hook_meta):
    """Their form has no float field (documented in the README's compatibility table)."""
    assert hook_meta.extra_fields["max_requests_per_second"]["schema"]["type"] == ["integer", "null"]


def test_the_form_is_the_same_on_this_airflow_line_as_described_once():
    """Labels, help, masked refresh token, hidden and relabelled fields: one table, every line."""
    (meta,) = served_form("as-installed")
    assert form_as_user_sees_it(meta) == EXPECTED_FORM


@pytest.mark.skipif(AIRFLOW < (3, 1), reason="Airflow 3.0 needs wtforms for any hook-drawn form")
def test_without_fab_or_wtforms_the_form_is_still_complete():
    """3.2+ reads provider info; 3.1 stands in for the missing wtforms itself."""
    (meta,) = served_form("without-wtforms")
    assert form_as_user_sees_it(meta) == EXPECTED_FORM


@pytest.mark.skipif(AIRFLOW >= (3, 1), reason="only Airflow 3.0 needs wtforms for the hook-drawn form")
def test_on_airflow_3_0_without_wtforms_the_type_stays_listed_with_standard_fields():
    """The documented degradation: the connection type and Extra JSON, no custom fields."""
    (meta,) = served_form("without-wtforms")
    assert meta["hook_name"] == "Constant Contact"
    assert meta["extra_fields"] is None


def test_a_masked_or_empty_token_url_falls_back_to_the_default():
    """The UI masks values of fields named like "token": a stored "***" means the default."""
    hook = fast_hook(token_url="***", api_base_url="")
    assert hook.token_url == DEFAULT_TOKEN_URL
    hook = fast_hook(token_url=None, api_base_url="")
    assert hook.token_url == DEFAULT_TOKEN_URL
    assert hook.api_base_url == DEFAULT_API_BASE_URL


def test_a_url_setting_that_is_not_a_url_is_rejected():
    with pytest.raises(ValueError, match="api_base_url must be an http"):
        fast_hook(api_base_url="api.cc.email/v3").api_base_url  # noqa: B018
