"""Data-aware scheduling end to end on a real `airflow standalone` (scheduler, triggerer, ...).

Triggering the producer (`constantcontact_segment_refresh`) rewrites the segment file, whose
Asset event makes the scheduler start the export DAG by itself; the export defers to the
triggerer while the sandbox processes the import, and its success emits the list's Asset event,
which queues the consumer (`constantcontact_list_updated`), which then runs. Nothing but the
producer is triggered by the test.
"""

from __future__ import annotations

import json
import time

import pytest

from airflow_provider_constantcontact.assets import contact_list_asset
from tests.airflow_compat import XCOM_VALUE_PARAMS
from tests.airflow_standalone import AirflowStandalone, AirflowStandaloneError
from tests.system.dag_runs import EXAMPLE_DAGS, load_demo

pytestmark = [pytest.mark.standalone, pytest.mark.timeout(900)]

PRODUCER = "constantcontact_segment_refresh"
EXPORT = "constantcontact_segment_refresh_export"
CONSUMER = "constantcontact_list_updated"


def wait_for_first_run(airflow: AirflowStandalone, dag_id: str, *, timeout: float = 300) -> dict:
    """The first DAG run of ``dag_id`` once it finished (the scheduler creates it, not the test)."""
    api = airflow.api_session()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = api.get(f"/api/v2/dags/{dag_id}/dagRuns").json()["dag_runs"]
        if runs:
            return airflow.wait_for_dag_run(
                dag_id, runs[0]["dag_run_id"], timeout=deadline - time.monotonic()
            )
        time.sleep(2)
    raise AirflowStandaloneError(
        f"the scheduler started no run of {dag_id} in {timeout:.0f}s\n{airflow.log_tail()}"
    )


def test_a_segment_refresh_runs_the_export_whose_list_update_runs_the_consumer(
    constantcontact_sandbox_factory, tmp_path
):
    demo = load_demo()
    sandbox = constantcontact_sandbox_factory(
        rate_limit=0,
        token_rate_limit=0,
        processing_rate=40,  # ~150 contacts: a few seconds, so the export defers to the triggerer
        custom_fields=["loyalty_tier"],
    )
    list_id = sandbox.create_list("Refreshed VIPs")
    customers = tmp_path / "crm" / "customers.parquet"
    expected = demo.generate_segment(customers, rows=400, seed=13)["vip"]
    segment_file = tmp_path / "segments" / "vip.parquet"
    config = {
        "customers": str(customers),
        "segment": "vip",
        "segment_uri": segment_file.as_uri(),
        "list_ids": [list_id],
    }

    with AirflowStandalone(
        dags_folder=EXAMPLE_DAGS,
        env={
            "AIRFLOW_CONN_CONSTANTCONTACT_DEFAULT": sandbox.connection_json(),
            # Read when the DAG files are parsed: the Assets the DAGs are scheduled on.
            "AIRFLOW_VAR_CONSTANTCONTACT_SEGMENT_REFRESH": json.dumps(config),
        },
    ) as airflow:
        api = airflow.api_session()
        for dag_id in (PRODUCER, EXPORT, CONSUMER):
            airflow.wait_for_dag(dag_id, timeout=180)
        for dag_id in (EXPORT, CONSUMER):  # new DAGs start paused
            api.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": False}).raise_for_status()

        producer_run = airflow.run_dag(PRODUCER, timeout=240)
        assert producer_run["state"] == "success", airflow.log_tail(120)

        export_run = wait_for_first_run(airflow, EXPORT)
        failure = f"{export_run}\n{airflow.log_tail(150)}"
        assert export_run["state"] == "success", failure
        assert export_run["run_type"] == "asset_triggered", failure
        export_tis = airflow.task_instances(EXPORT, export_run["dag_run_id"])
        assert [(ti["task_id"], ti["state"], ti["try_number"]) for ti in export_tis] == [
            ("export_segment", "success", 1)
        ]

        consumer_run = wait_for_first_run(airflow, CONSUMER)
        assert consumer_run["state"] == "success", f"{consumer_run}\n{airflow.log_tail(150)}"
        assert consumer_run["run_type"] == "asset_triggered"

        # What the consumer saw: the list's event from the export, with counts only.
        uri = contact_list_asset(list_id).uri
        updates = api.get(
            f"/api/v2/dags/{CONSUMER}/dagRuns/{consumer_run['dag_run_id']}/taskInstances/"
            "report_list_update/xcomEntries/return_value",
            params=XCOM_VALUE_PARAMS,
        ).json()["value"]
        if isinstance(updates, str):
            updates = json.loads(updates)
        assert updates == {uri: [{"contacts_submitted": len(expected)}]}

        # The export deferred to the triggerer before its success emitted the event.
        export_log = "\n".join(
            path.read_text(errors="replace")
            for path in airflow.task_log_files()
            if f"dag_id={EXPORT}" in str(path) and ".trigger." not in path.name
        )
        assert "Pausing task as DEFERRED" in export_log, export_log[-3000:]

    assert sandbox.list_members(list_id) == expected
