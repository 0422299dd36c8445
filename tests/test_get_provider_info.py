"""Provider registration: the metadata Airflow reads is valid and complete."""

from __future__ import annotations

import importlib
import json
from importlib.metadata import entry_points
from pathlib import Path

import airflow
import jsonschema

from airflow_provider_constantcontact.get_provider_info import get_provider_info


def test_provider_info_is_valid_against_airflows_own_schema():
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_entry_point_points_at_get_provider_info():
    (entry,) = [
        ep
        for ep in entry_points(group="apache_airflow_provider")
        if ep.name == "provider_info" and ep.value.startswith("airflow_provider_constantcontact")
    ]
    assert entry.load() is get_provider_info


def test_every_listed_module_and_hook_class_imports():
    info = get_provider_info()
    for kind in ("hooks", "operators", "sensors", "triggers"):
        for group in info[kind]:
            for module in group["python-modules"]:
                importlib.import_module(module)
    module_name, _, class_name = info["connection-types"][0]["hook-class-name"].rpartition(".")
    hook_class = getattr(importlib.import_module(module_name), class_name)
    assert hook_class.conn_type == "constantcontact"
    assert hook_class.default_conn_name == "constantcontact_default"


def test_hidden_fields_are_standard_fields_airflows_form_can_hide():
    """A name the UI has no standard field for (e.g. "extra") would be silently ignored."""
    from airflow.api_fastapi.core_api.datamodels.connections import StandardHookFields

    hideable = {"schema" if name == "url_schema" else name for name in StandardHookFields.model_fields}
    hidden = get_provider_info()["connection-types"][0]["ui-field-behaviour"]["hidden-fields"]
    assert set(hidden) == {"host", "schema", "port"}
    assert set(hidden) <= hideable
