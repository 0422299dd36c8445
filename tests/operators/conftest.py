"""Fixtures for the export operator tests: a sandbox-backed operator factory and Parquet writers."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from airflow.sdk import Connection

from airflow_provider_constantcontact.hooks._token_store import MemoryTokenStore
from airflow_provider_constantcontact.hooks.constantcontact import ConstantContactHook
from airflow_provider_constantcontact.operators.constantcontact import ConstantContactSegmentExportOperator
from airflow_provider_constantcontact.sandbox.emulator import ConstantContactSandbox

IMPORT_PATH = "/v3/activities/contacts_json_import"
MAPPING = {"email": "Email", "first_name": "First", "last_name": "Last", "cf:loyalty_tier": "Tier"}


class FakeTI:
    """The part of a task instance the operator uses: ``xcom_push``."""

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def sandbox_hook(sandbox: ConstantContactSandbox, conn_id: str = "cc_export_test") -> ConstantContactHook:
    """A hook on the sandbox with an in-memory token store and millisecond retry backoff."""
    conn = sandbox.connection_dict()
    connection = Connection(
        conn_id=conn_id,
        conn_type="constantcontact",
        login=conn["login"],
        password=conn["password"],
        extra=json.dumps(conn["extra"]),
    )
    return ConstantContactHook(
        conn_id,
        connection=connection,
        token_store=MemoryTokenStore(),
        max_attempts=6,
        backoff_initial=0.001,
        backoff_max=0.01,
        backoff_jitter=0.0,
    )


def write_parquet(path: Path, columns: dict[str, Any], **kwargs: Any) -> Path:
    """Write ``columns`` (name -> list or Arrow array) as a Parquet file, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path, **kwargs)
    return path


def imports_in_log(sandbox: ConstantContactSandbox) -> list[Any]:
    """The import POSTs the sandbox received (any status)."""
    return [entry for entry in sandbox.request_log if entry.method == "POST" and entry.path == IMPORT_PATH]


@pytest.fixture
def newsletter(constantcontact_sandbox: ConstantContactSandbox) -> str:
    """The id of the seeded "Newsletter" list."""
    return constantcontact_sandbox.list_ids["Newsletter"]


@pytest.fixture
def make_export(
    constantcontact_sandbox: ConstantContactSandbox, newsletter: str
) -> Callable[..., ConstantContactSegmentExportOperator]:
    """Build an export operator wired to the sandbox (defaults: Newsletter list, MAPPING, no wait)."""

    def factory(**kwargs: Any) -> ConstantContactSegmentExportOperator:
        options: dict[str, Any] = {
            "task_id": "export",
            "list_ids": [newsletter],
            "field_mapping": MAPPING,
            "wait_for_completion": False,
            "deferrable": False,
            "poll_interval": 0.05,
        }
        options.update(kwargs)
        operator = ConstantContactSegmentExportOperator(**options)
        operator.hook = sandbox_hook(constantcontact_sandbox)
        return operator

    return factory


def run(operator: ConstantContactSegmentExportOperator) -> tuple[dict[str, Any], FakeTI]:
    """Execute the operator with a minimal context; return its summary and the fake TI."""
    ti = FakeTI()
    summary = operator.execute({"ti": ti})
    json.dumps(summary)  # must be JSON-serialisable (XCom)
    return summary, ti
