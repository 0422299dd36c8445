"""End to end on a real `airflow standalone` (API server, scheduler, triggerer, DAG processor).

The manual example DAG is triggered through the REST API with a conf, as a person would from
the trigger form. The sandbox processes the import slowly, so the deferrable sensor really
hands the wait to the triggerer; while it waits, the sandbox expires every access token and
rotates refresh tokens, so the trigger must refresh the token inside the triggerer and persist
the rotated refresh token in the Airflow Variable from there.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.airflow_standalone import AirflowStandalone
from tests.system.dag_runs import EXAMPLE_DAGS, load_demo

pytestmark = [pytest.mark.standalone, pytest.mark.timeout(900)]

DAG_ID = "constantcontact_manual_export"
SENSOR = "wait_for_import"
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
    conf = {"source": str(source), "list_ids": [list_id], "segments": ["vip"], "dry_run": False}

    with AirflowStandalone(
        dags_folder=EXAMPLE_DAGS,
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
            "dry_run_export": "skipped",
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
            params={"deserialize": True},
        ).json()["value"]
        if isinstance(summary, str):
            summary = json.loads(summary)
        assert summary["done"] is True
        assert summary["totals"]["items_total_count"] == len(expected)

    assert sandbox.list_members(list_id) == expected


def token_requests(sandbox) -> int:
    return sum(1 for entry in sandbox.request_log if entry.path.endswith("/token") and entry.status == 200)


def task_log(airflow: AirflowStandalone, task_id: str, *, trigger: bool) -> str:
    """The task's own log files, or the trigger log files the triggerer wrote for it."""
    files = [p for p in airflow.task_log_files() if f"task_id={task_id}" in str(p)]
    return "\n".join(p.read_text(errors="replace") for p in files if (".trigger." in p.name) == trigger)
