"""The Constant Contact connection form, described once for every Airflow 3 line.

Airflow 3.2+ reads it from provider info (``conn-fields``, ``ui-field-behaviour``, built in
``get_provider_info.py``); 3.0 and 3.1 call the hook's ``get_connection_form_widgets`` and
``get_ui_field_behaviour`` (built by ``_compat.legacy_connection_form_widgets``). Both read this
table, so labels, help, defaults, hidden fields and masked secrets match on every line.
Airflow-free, like ``constants.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from airflow_provider_constantcontact.constants import (
    DEFAULT_API_BASE_URL,
    DEFAULT_TOKEN_URL,
    MAX_REQUESTS_PER_SECOND,
)

#: ``text`` and ``password`` hold strings (``password`` is masked); ``number`` is a rate >= 0.
FieldKind = Literal["text", "password", "number"]


@dataclass(frozen=True)
class ExtraField:
    """One field of the form stored in ``Connection.extra`` under ``name``."""

    name: str
    label: str
    description: str
    kind: FieldKind = "text"
    default: str | int | None = None


EXTRA_FIELDS: tuple[ExtraField, ...] = (
    ExtraField(
        name="refresh_token",
        label="Refresh token",
        description=(
            "OAuth2 refresh token from a one-time consent by a Constant Contact account admin, with the "
            "contact_data and offline_access scopes. Get it with the `constantcontact-auth` command that "
            "ships with this provider."
        ),
        kind="password",
    ),
    ExtraField(
        name="api_base_url",
        label="API base URL",
        description=(
            "Constant Contact V3 API root. Leave empty for the real service; set it to a local sandbox "
            "(`constantcontact-sandbox`) to test without an account."
        ),
        default=DEFAULT_API_BASE_URL,
    ),
    # No default: Airflow masks the values of extra fields whose name holds "token", so a default
    # here would reach the form as "***".
    ExtraField(
        name="token_url",
        label="Token URL",
        description=(
            f"OAuth2 token endpoint used to refresh access tokens. Leave empty for {DEFAULT_TOKEN_URL}; "
            "a local sandbox prints its own."
        ),
    ),
    ExtraField(
        name="max_requests_per_second",
        label="Requests per second",
        description=(
            f"Pace of API calls per worker process. Constant Contact allows {MAX_REQUESTS_PER_SECOND:g} a "
            "second per application; 0 turns pacing off (only for a local sandbox)."
        ),
        kind="number",
        default=int(MAX_REQUESTS_PER_SECOND),
    ),
)

#: Standard fields the form hides (Airflow 3's form always shows the Extra JSON editor).
HIDDEN_FIELDS: tuple[str, ...] = ("host", "schema", "port")
RELABELING: dict[str, str] = {"login": "Client ID (API key)", "password": "Client secret"}
#: Help in the empty Client ID and Client secret inputs (the form has no descriptions for them),
#: short enough to fit the inputs; a public client is a PKCE-flow or device-flow application.
CLIENT_ID_PLACEHOLDER = "The application's API key (developer portal → My Applications)"
CLIENT_SECRET_PLACEHOLDER = "My Applications → app → Generate Secret; empty for public apps"
#: Airflow shows placeholders for the standard fields only; extra fields carry their defaults
#: and help in the table above.
PLACEHOLDERS: dict[str, str] = {"login": CLIENT_ID_PLACEHOLDER, "password": CLIENT_SECRET_PLACEHOLDER}
