"""Provider metadata Airflow reads through the ``apache_airflow_provider`` entry point.

Metadata only: the defaults shown in the form come from ``constants.py``, and no runtime module
imports from here.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_constantcontact.connection_form import (
    CLIENT_ID_PLACEHOLDER,
    CLIENT_SECRET_PLACEHOLDER,
    EXTRA_FIELDS,
    HIDDEN_FIELDS,
    PLACEHOLDERS,
    RELABELING,
    ExtraField,
)

INTEGRATION = "Constant Contact"
PACKAGE = "airflow_provider_constantcontact"

__all__ = ["CLIENT_ID_PLACEHOLDER", "CLIENT_SECRET_PLACEHOLDER", "get_provider_info"]


def _json_schema(field: ExtraField) -> dict[str, Any]:
    """The JSON Schema of one extra field, as Airflow 3.2+ renders it (``password`` is masked)."""
    if field.kind == "number":
        schema: dict[str, Any] = {"type": ["number", "null"], "minimum": 0}
    else:
        schema = {"type": ["string", "null"]}
    if field.kind == "password":
        schema["format"] = "password"
    if field.default is not None:
        schema["default"] = field.default
    return schema


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
                    field.name: {
                        "label": field.label,
                        "description": field.description,
                        "schema": _json_schema(field),
                    }
                    for field in EXTRA_FIELDS
                },
                "ui-field-behaviour": {
                    "hidden-fields": list(HIDDEN_FIELDS),
                    "relabeling": dict(RELABELING),
                    "placeholders": dict(PLACEHOLDERS),
                },
            }
        ],
    }
