"""The connection form as the UI receives it (``GET /ui/connections/hook_meta``)."""

from __future__ import annotations

import pytest

from airflow_provider_constantcontact.constants import DEFAULT_API_BASE_URL, DEFAULT_TOKEN_URL
from airflow_provider_constantcontact.get_provider_info import (
    CLIENT_ID_PLACEHOLDER,
    CLIENT_SECRET_PLACEHOLDER,
)
from tests.hooks.helpers import fast_hook


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
    assert extra["api_base_url"]["schema"]["default"] == DEFAULT_API_BASE_URL
    assert extra["api_base_url"]["value"] == DEFAULT_API_BASE_URL
    # token_url's default lives in the hook and the description: a schema default would be masked.
    assert "default" not in extra["token_url"]["schema"]
    assert extra["token_url"]["value"] is None
    assert DEFAULT_TOKEN_URL in extra["token_url"]["description"]
    assert extra["max_requests_per_second"]["schema"]["default"] == 4


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
