"""Run the probe DAGs (tests/system/probe_dags/) with a conf against a sandbox, the way a user would."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.system.dag_runs import airflow_dags_test, latest_run, load_demo, searchable_output

PROBE_DAGS = Path(__file__).parent / "probe_dags"
IMPORT_PATH = "/v3/activities/contacts_json_import"
demo = load_demo()


def run_probe(
    dag_id: str, sandbox: Any, conf: dict[str, Any]
) -> tuple[subprocess.CompletedProcess, str, dict[str, Any] | None]:
    """``airflow dags test`` of a probe DAG: (the finished process, the run's state, the export's summary)."""
    result = airflow_dags_test(
        dag_id,
        env={"AIRFLOW_CONN_CONSTANTCONTACT_DEFAULT": sandbox.connection_json()},
        conf=json.dumps(conf),
        dags_folder=PROBE_DAGS,
    )
    run_id, state = latest_run(dag_id)
    return result, state, demo.read_xcom(dag_id, "export", run_id=run_id)


def output_of(result: subprocess.CompletedProcess) -> str:
    return searchable_output(result)


def changes_made(sandbox: Any) -> list[str]:
    """Every request of the sandbox's log that could change the account (anything but a GET or a token)."""
    return [
        f"{entry.method} {entry.path}"
        for entry in sandbox.request_log
        if entry.method != "GET" and entry.path.startswith("/v3")
    ]
