"""End to end on a real `airflow standalone` (API server, scheduler, triggerer, DAG processor).

The manual example DAG is triggered through the REST API with a conf, as a person would from
the trigger form. The sandbox processes the import slowly, so the deferrable sensor really
hands the wait to the triggerer; while it waits, the sandbox expires every access token and
rotates refresh tokens, so the trigger must refresh the token inside the triggerer and persist
the rotated refresh token in the Airflow Variable from there.

Then a second DAG beside the example runs the export itself with ``deferrable=True``: the
export task hands its wait to the triggerer and resumes there with its summary (issue 13).
"""

from __future__ import annotations

import json
import shutil
import textwrap
import time

import pytest

from tests.airflow_compat import XCOM_VALUE_PARAMS
from tests.airflow_standalone import AirflowStandalone
from tests.system.dag_runs import EXAMPLE_DAGS, load_demo

pytestmark = [pytest.mark.standalone, pytest.mark.timeout(900)]

DAG_ID = "constantcontact_manual_export"
SENSOR = "wait_for_import"
DEFERRABLE_DAG_ID = "constantcontact_deferrable_export_e2e"
DEFERRABLE_DAG = textwrap.dedent(
    f'''
    """The export itself deferrable: it waits for its imports in the triggerer."""
    import pendulum
    from airflow.sdk import dag, task

    from airflow_provider_constantcontact.operators.constantcontact import (
        ConstantContactSegmentExportOperator,
    )


    @dag(
        dag_id="{DEFERRABLE_DAG_ID}",
        schedule=None,
        start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
        catchup=False,
        params={{"source": "", "list_ids": [], "segments": []}},
    )
    def deferrable_export():
        export = ConstantContactSegmentExportOperator(
            task_id="export",
            source="{{{{ params.source }}}}",
            list_ids="{{{{ params.list_ids }}}}",
            field_mapping={{
                "email": "email",
                "first_name": "first_name",
                "last_name": "last_name",
                "cf:loyalty_tier": "loyalty_tier",
            }},
            segment_column="segment",
            segments="{{{{ params.segments }}}}",
            wait_for_completion=True,
            deferrable=True,
            poll_interval=2,
        )

        @task
        def check(activity_ids, summary):
            if not activity_ids or activity_ids != summary["activity_ids"]:
                raise RuntimeError(f"activity_ids XCom {{activity_ids!r}} != summary {{summary!r}}")

        check(export.output["activity_ids"], export.output)


    deferrable_export()
    '''
)
TOKEN_VARIABLE = "constantcontact_constantcontact_default_oauth_tokens"


def test_manual_dag_through_the_rest_api_defers_to_the_triggerer(constantcontact_sandbox_factory, tmp_path):
    demo = load_demo()
    sandbox = constantcontact_sandbox_factory(
        rate_limit=0,
        token_rate_limit=0,
        # ~300 contacts at 12/s: about 25 s of processing, so the sensor defers.
        processing_rate=12,
        rotating_refresh_tokens=True,
        custom_fields=["loyalty_tier"],
    )
    list_id = sandbox.create_list("Standalone e2e")
    source = tmp_path / "segment.parquet"
    expected = demo.generate_segment(source, rows=800, seed=3)["vip"]
    conf = {"source": str(source), "list_ids": [list_id], "segments": ["vip"], "plan_only": False}
    dags_folder = tmp_path / "dags"
    shutil.copytree(EXAMPLE_DAGS, dags_folder, ignore=shutil.ignore_patterns("__pycache__"))
    (dags_folder / "deferrable_export_e2e.py").write_text(DEFERRABLE_DAG)

    with AirflowStandalone(
        dags_folder=dags_folder,
        env={"AIRFLOW_CONN_CONSTANTCONTACT_DEFAULT": sandbox.connection_json()},
    ) as airflow:
        airflow.wait_for_dag(DAG_ID, timeout=180)
        api = airflow.api_session()
        api.patch(f"/api/v2/dags/{DAG_ID}", json={"is_paused": False}).raise_for_status()
        response = api.post(f"/api/v2/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": conf})
        response.raise_for_status()
        run_id = response.json()["dag_run_id"]

        sensor_states: list[str] = []
        refreshes_before_expiry = None
        deadline = time.monotonic() + 480
        run: dict = {}
        while time.monotonic() < deadline:
            run = api.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}").json()
            states = {ti["task_id"]: ti["state"] for ti in airflow.task_instances(DAG_ID, run_id)}
            state = states.get(SENSOR)
            if not sensor_states or sensor_states[-1] != state:
                sensor_states.append(state)
            if state == "deferred" and refreshes_before_expiry is None:
                # Mid-wait, every access token dies: the trigger must refresh in the triggerer.
                refreshes_before_expiry = token_requests(sandbox)
                sandbox.expire_access_tokens()
            if run.get("state") in ("success", "failed"):
                break
            time.sleep(0.5)

        failure = f"run {run.get('state')}, sensor states {sensor_states}\n{airflow.log_tail(120)}"
        assert run.get("state") == "success", failure
        tis = {ti["task_id"]: ti for ti in airflow.task_instances(DAG_ID, run_id)}
        assert {t: ti["state"] for t, ti in tis.items()} == {
            "choose_mode": "success",
            "export_segment": "success",
            "plan_only_export": "skipped",
            SENSOR: "success",
        }, failure

        # The sensor's task instance passed through `deferred` ...
        assert "deferred" in sensor_states, failure
        assert sensor_states[-1] == "success"
        # ... without using up a try (a deferral is not a retry) ...
        assert tis[SENSOR]["try_number"] == 1
        # ... and the triggerer ran the trigger to its success event (the triggerer writes the
        # trigger's log next to the task's: attempt=1.log.trigger.<trigger id>.log).
        sensor_log = task_log(airflow, SENSOR, trigger=False)
        assert "Pausing task as DEFERRED" in sensor_log, sensor_log[-3000:]
        trigger_log = task_log(airflow, SENSOR, trigger=True)
        assert "Trigger fired event" in trigger_log, failure
        assert "'status': 'success'" in trigger_log
        assert "100.0% done" in trigger_log
        assert "trigger completed" in trigger_log

        # The trigger refreshed the expired token inside the triggerer and stored the rotated
        # refresh token in the Airflow Variable from there.
        assert "rotated refresh token saved" in trigger_log, trigger_log[-3000:]
        assert refreshes_before_expiry is not None, failure
        assert token_requests(sandbox) > refreshes_before_expiry, "the trigger never refreshed the token"
        stored = airflow.airflow("variables", "get", TOKEN_VARIABLE)
        assert stored.returncode == 0, stored.stderr[-2000:]
        # The newest refresh token exists only since the triggerer's refresh.
        assert sandbox.refresh_token in stored.stdout

        summary = api.get(
            f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{SENSOR}/xcomEntries/return_value",
            params=XCOM_VALUE_PARAMS,
        ).json()["value"]
        if isinstance(summary, str):
            summary = json.loads(summary)
        assert summary["done"] is True
        assert summary["totals"]["items_total_count"] == len(expected)
        assert sandbox.list_members(list_id) == expected

        # The export itself deferrable: it waits in the triggerer and resumes with its summary.
        deferred_list = sandbox.create_list("Standalone e2e deferrable")
        airflow.wait_for_dag(DEFERRABLE_DAG_ID, timeout=180)
        api.patch(f"/api/v2/dags/{DEFERRABLE_DAG_ID}", json={"is_paused": False}).raise_for_status()
        response = api.post(
            f"/api/v2/dags/{DEFERRABLE_DAG_ID}/dagRuns",
            json={
                "logical_date": None,
                "conf": {"source": str(source), "list_ids": [deferred_list], "segments": ["vip"]},
            },
        )
        response.raise_for_status()
        run_id = response.json()["dag_run_id"]
        export_states: list[str] = []
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            run = api.get(f"/api/v2/dags/{DEFERRABLE_DAG_ID}/dagRuns/{run_id}").json()
            states = {ti["task_id"]: ti["state"] for ti in airflow.task_instances(DEFERRABLE_DAG_ID, run_id)}
            if not export_states or export_states[-1] != states.get("export"):
                export_states.append(states.get("export"))
            if run.get("state") in ("success", "failed"):
                break
            time.sleep(0.5)
        failure = f"run {run.get('state')}, export states {export_states}\n{airflow.log_tail(120)}"
        assert run.get("state") == "success", failure
        assert "deferred" in export_states, failure
        tis = {ti["task_id"]: ti for ti in airflow.task_instances(DEFERRABLE_DAG_ID, run_id)}
        assert {t: ti["state"] for t, ti in tis.items()} == {"export": "success", "check": "success"}
        assert tis["export"]["try_number"] == 1

        def xcom(key: str):
            value = api.get(
                f"/api/v2/dags/{DEFERRABLE_DAG_ID}/dagRuns/{run_id}/taskInstances/export/xcomEntries/{key}",
                params=XCOM_VALUE_PARAMS,
            ).json()["value"]
            return json.loads(value) if isinstance(value, str) else value

        export_summary = xcom("return_value")
        activity_ids = xcom("activity_ids")
        assert activity_ids, export_summary
        assert export_summary["activity_ids"] == activity_ids
        assert export_summary["contacts_submitted"] == len(expected)
        assert export_summary["items_total_count"] == len(expected)
        assert export_summary["waited"] is True
        assert set(export_summary["activity_states"]) == set(activity_ids)
        for activity_id in activity_ids:
            assert sandbox.get_activity(activity_id)["state"] == "completed"

    assert sandbox.list_members(deferred_list) == expected


def token_requests(sandbox) -> int:
    return sum(1 for entry in sandbox.request_log if entry.path.endswith("/token") and entry.status == 200)


def task_log(airflow: AirflowStandalone, task_id: str, *, trigger: bool) -> str:
    """The task's own log files, or the trigger log files the triggerer wrote for it."""
    files = [p for p in airflow.task_log_files() if f"task_id={task_id}" in str(p)]
    return "\n".join(p.read_text(errors="replace") for p in files if (".trigger." in p.name) == trigger)
