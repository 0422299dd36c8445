"""The import sensor's poke and reschedule modes on real Airflow (`airflow dags test`).

The deferrable mode runs in the example DAGs' tests. Here a DAG starts an import and waits for it
with a reschedule-mode sensor (ids as a Jinja-rendered string), then starts another and waits
with a poke-mode sensor (ids as an XComArg); the sandbox processes each in about 12 seconds.
"""

from __future__ import annotations

import json
from textwrap import dedent

from tests.system.dag_runs import airflow_dags_test, describe, latest_run, load_demo, task_states

DAG_ID = "constantcontact_sensor_modes"
DAG_FILE = dedent(
    f"""
    import pendulum
    from airflow.sdk import DAG, task

    from airflow_provider_constantcontact.hooks.constantcontact import ConstantContactHook
    from airflow_provider_constantcontact.sensors.constantcontact import ConstantContactImportSensor


    @task
    def start_import(name, params=None):
        contacts = [{{"email": f"{{name}}{{i}}@example.com"}} for i in range(12)]
        return ConstantContactHook().import_contacts(contacts, [params["list_id"]])["activity_id"]


    with DAG("{DAG_ID}", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC")):
        # Each sensor waits for an import started just before it, so both find it running.
        first = start_import.override(task_id="start_first")("first")
        wait_reschedule = ConstantContactImportSensor(
            task_id="wait_reschedule",
            # Renders to a string such as "['<id>']": the sensor parses it.
            activity_ids="{{{{ ti.xcom_pull(task_ids='start_first') }}}}",
            mode="reschedule",
            deferrable=False,
            poke_interval=2,
            timeout=300,
        )
        second = start_import.override(task_id="start_second")("second")
        wait_poke = ConstantContactImportSensor(
            task_id="wait_poke",
            activity_ids=second,
            mode="poke",
            deferrable=False,
            poke_interval=1,
            timeout=300,
        )
        first >> wait_reschedule >> second
    """
)


def test_poke_and_reschedule_modes_wait_for_the_import(airflow_db, constantcontact_sandbox, tmp_path):
    sandbox = constantcontact_sandbox
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "sensor_modes.py").write_text(DAG_FILE)
    sandbox.processing_rate = 1  # 12 contacts: about 12 s, several polls in each mode
    list_id = sandbox.create_list("Sensor modes")

    result = airflow_dags_test(
        DAG_ID,
        env={"AIRFLOW_CONN_CONSTANTCONTACT_DEFAULT": sandbox.connection_json()},
        conf=json.dumps({"list_id": list_id}),
        dags_folder=dags,
    )

    assert result.returncode == 0, describe(result)
    run_id, state = latest_run(DAG_ID)
    assert state == "success"
    assert set(task_states(DAG_ID, run_id).values()) == {"success"}
    output = result.stdout + result.stderr
    # The reschedule-mode sensor gave its slot back while the import ran, then succeeded ...
    assert "Rescheduling task, marking task as UP_FOR_RESCHEDULE" in output, describe(result)
    # ... and the poke-mode sensor polled the running import several times in one try.
    assert output.count("1 processing;") >= 4, describe(result)
    demo = load_demo()
    for task_id in ("wait_poke", "wait_reschedule"):
        summary = demo.read_xcom(DAG_ID, task_id, run_id=run_id)
        assert summary["done"] is True
        (entry,) = summary["activities"].values()
        assert entry["state"] == "completed"
        assert summary["totals"]["items_total_count"] == 12
