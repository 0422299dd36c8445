"""Provider metadata Airflow reads through the ``apache_airflow_provider`` entry point.

Metadata only: the defaults shown in the form come from ``constants.py``, and no runtime module
imports from here.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_constantcontact.constants import (
    DEFAULT_API_BASE_URL,
    DEFAULT_TOKEN_URL,
    MAX_REQUESTS_PER_SECOND,
)

INTEGRATION = "Constant Contact"
PACKAGE = "airflow_provider_constantcontact"

#: Help in the empty Client ID and Client secret inputs (the form has no descriptions for them),
#: short enough to fit the inputs; a public client is a PKCE-flow or device-flow application.
CLIENT_ID_PLACEHOLDER = "The application's API key (developer portal → My Applications)"
CLIENT_SECRET_PLACEHOLDER = "My Applications → app → Generate Secret; empty for public apps"


def get_provider_info() -> dict[str, Any]:
    """Describe the provider: its modules and the declarative Constant Contact connection form."""
    return {
        "package-name": "airflow-provider-constantcontact",
        "name": "Constant Contact",
        "description": "Export Parquet customer segments to Constant Contact contact lists.",
        "integrations": [
            {
                "integration-name": INTEGRATION,
                "external-doc-url": "https://developer.constantcontact.com/api_guide/index.html",
                "tags": ["service"],
            }
        ],
        "hooks": [{"integration-name": INTEGRATION, "python-modules": [f"{PACKAGE}.hooks.constantcontact"]}],
        "operators": [
            {"integration-name": INTEGRATION, "python-modules": [f"{PACKAGE}.operators.constantcontact"]}
        ],
        "sensors": [
            {"integration-name": INTEGRATION, "python-modules": [f"{PACKAGE}.sensors.constantcontact"]}
        ],
        "triggers": [
            {"integration-name": INTEGRATION, "python-modules": [f"{PACKAGE}.triggers.constantcontact"]}
        ],
        "asset-uris": [
            {
                "schemes": ["constantcontact"],
                "handler": f"{PACKAGE}.assets.sanitize_uri",
                "factory": f"{PACKAGE}.assets.create_asset",
                "to_openlineage_converter": f"{PACKAGE}.assets.convert_asset_to_openlineage",
            }
        ],
        "connection-types": [
            {
                "hook-class-name": f"{PACKAGE}.hooks.constantcontact.ConstantContactHook",
                "hook-name": "Constant Contact",
                "connection-type": "constantcontact",
                "conn-fields": {
                    "refresh_token": {
                        "label": "Refresh token",
                        "description": (
                            "OAuth2 refresh token from a one-time consent by a Constant Contact account "
                            "admin, with the contact_data and offline_access scopes. Get it with the "
                            "`constantcontact-auth` command that ships with this provider."
                        ),
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                    "api_base_url": {
                        "label": "API base URL",
                        "description": (
                            "Constant Contact V3 API root. Leave empty for the real service; set it to a "
                            "local sandbox (`constantcontact-sandbox`) to test without an account."
                        ),
                        "schema": {"type": ["string", "null"], "default": DEFAULT_API_BASE_URL},
                    },
                    "token_url": {
                        "label": "Token URL",
                        # No schema default: Airflow masks the values of extra fields whose name holds
                        # "token", so a default here would reach the form as "***".
                        "description": (
                            f"OAuth2 token endpoint used to refresh access tokens. Leave empty for "
                            f"{DEFAULT_TOKEN_URL}; a local sandbox prints its own."
                        ),
                        "schema": {"type": ["string", "null"]},
                    },
                    "max_requests_per_second": {
                        "label": "Requests per second",
                        "description": (
                            f"Pace of API calls per worker process. Constant Contact allows "
                            f"{MAX_REQUESTS_PER_SECOND:g} a second per application; 0 turns pacing off "
                            "(only for a local sandbox)."
                        ),
                        "schema": {
                            "type": ["number", "null"],
                            "default": int(MAX_REQUESTS_PER_SECOND),
                            "minimum": 0,
                        },
                    },
                },
                "ui-field-behaviour": {
                    # Airflow 3's form always shows the Extra JSON editor: only standard fields hide.
                    "hidden-fields": ["host", "schema", "port"],
                    "relabeling": {"login": "Client ID (API key)", "password": "Client secret"},
                    # Airflow's form shows placeholders for the standard fields only; the extra
                    # fields carry their defaults in the schema and their help in descriptions.
                    "placeholders": {
                        "login": CLIENT_ID_PLACEHOLDER,
                        "password": CLIENT_SECRET_PLACEHOLDER,
                    },
                },
            }
        ],
    }
