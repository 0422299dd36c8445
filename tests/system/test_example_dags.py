"""The example DAGs on real Airflow: parsing, and `airflow dags test` against the sandbox.

Each run is a real ``airflow dags test`` sub-process on this session's migrated SQLite DB, with
``example_dags/`` as the DAGs folder and the connection pointing at the in-process sandbox. The
sensor defers (the sandbox holds the import until the sensor's first poll) and ``dags test`` runs its
trigger in line; the list in the sandbox and the XComs in the metadata DB are checked after.
"""

from __future__ import annotations

import json

import pytest

from tests.system.dag_runs import (
    EXAMPLE_DAGS,
    airflow_dags_test,
    describe,
    latest_run,
    load_demo,
    task_states,
)

SCHEDULED = "constantcontact_segment_export"
MANUAL = "constantcontact_manual_export"

demo = load_demo()


@pytest.fixture
def segment(tmp_path):
    """A small Parquet segment (two segments, invalid and duplicate emails); its expected imports."""
    path = tmp_path / "segment" / "customers.parquet"
    expected = demo.generate_segment(path, rows=400, seed=11)
    return path, expected


@pytest.fixture
def slow_processing_sandbox(constantcontact_sandbox):
    """The default sandbox, processing imports at 20 contacts a second."""
    # Slow enough that the sensor finds the import running and defers; fast enough for a test.
    constantcontact_sandbox.processing_rate = 20  # ~160 contacts: about 8 s
    return constantcontact_sandbox


def test_example_dags_parse_without_errors():
    from tests.airflow_compat import DagBag

    bag = DagBag(dag_folder=str(EXAMPLE_DAGS))

    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {
        SCHEDULED,
        MANUAL,
        # Data-aware examples: tests/system/test_data_aware_examples.py
        "constantcontact_segment_refresh",
        "constantcontact_segment_refresh_export",
        "constantcontact_list_updated",
        "constantcontact_many_segments",
    }

    scheduled = bag.dags[SCHEDULED]
    assert scheduled.schedule == "@daily"
    assert scheduled.get_task("wait_for_import").deferrable is True

    manual = bag.dags[MANUAL]
    assert manual.schedule is None
    assert manual.get_task("wait_for_import").deferrable is True
    params = manual.params
    expected_types = {
        "source": "string",
        "list_ids": "array",
        "segment_column": ["null", "string"],
        "segments": "array",
        "plan_only": "boolean",
        "max_error_ratio": "number",
    }
    for name, json_type in expected_types.items():
        param = params.get_param(name)
        assert param.schema["type"] == json_type, name
        assert param.description, f"param {name} has no description"
        assert param.schema.get("title"), f"param {name} has no title"
    assert params["plan_only"] is False
    assert "dry_run" not in params


def test_scheduled_dag_exports_the_segment_and_waits_in_the_trigger(
    airflow_db, slow_processing_sandbox, segment
):
    source, expected = segment
    list_id = slow_processing_sandbox.create_list("Daily VIP")
    # The sensor's first poll (before it defers) finds the import running however slow this
    # machine is; from the trigger's first poll on it proceeds at 20 contacts a second.
    slow_processing_sandbox.hold_processing(polls=1)
    config = {"source": str(source), "list_ids": [list_id], "segment_column": "segment", "segments": ["vip"]}

    result = airflow_dags_test(
        SCHEDULED,
        env={
            "AIRFLOW_CONN_CONSTANTCONTACT_DEFAULT": slow_processing_sandbox.connection_json(),
            "AIRFLOW_VAR_CONSTANTCONTACT_SEGMENT_EXPORT": json.dumps(config),
        },
    )

    assert result.returncode == 0, describe(result)
    run_id, state = latest_run(SCHEDULED)
    assert state == "success"
    assert task_states(SCHEDULED, run_id) == {"export_segment": "success", "wait_for_import": "success"}

    # The sandbox list holds exactly the valid, de-duplicated VIP contacts, field by field.
    assert slow_processing_sandbox.list_members(list_id) == expected["vip"]

    export = demo.read_xcom(SCHEDULED, "export_segment", run_id=run_id)
    assert export["contacts_submitted"] == len(expected["vip"])
    activity_ids = demo.read_xcom(SCHEDULED, "export_segment", key="activity_ids", run_id=run_id)
    assert activity_ids == export["activity_ids"]
    assert activity_ids

    summary = demo.read_xcom(SCHEDULED, "wait_for_import", run_id=run_id)
    assert summary["done"] is True
    assert set(summary["activities"]) == set(activity_ids)
    assert {a["state"] for a in summary["activities"].values()} == {"completed"}
    assert summary["totals"]["items_total_count"] == len(expected["vip"])
    assert summary["totals"]["error_count"] == 0

    # The sensor really deferred and its trigger (run in line by `dags test`) completed it.
    output = result.stdout + result.stderr
    assert "Pausing task as DEFERRED" in output
    assert "running trigger in line" in output
    assert "ConstantContactImportTrigger" in output


def test_manual_dag_exports_the_chosen_segments_from_its_form(airflow_db, slow_processing_sandbox, segment):
    source, expected = segment
    list_id = slow_processing_sandbox.create_list("Manual export")
    conf = {"source": str(source), "list_ids": [list_id], "segments": ["regular"], "plan_only": False}

    result = airflow_dags_test(
        MANUAL,
        env={"AIRFLOW_CONN_CONSTANTCONTACT_DEFAULT": slow_processing_sandbox.connection_json()},
        conf=json.dumps(conf),
    )

    assert result.returncode == 0, describe(result)
    run_id, state = latest_run(MANUAL)
    assert state == "success"
    assert task_states(MANUAL, run_id) == {
        "choose_mode": "success",
        "export_segment": "success",
        "plan_only_export": "skipped",
        "wait_for_import": "success",
    }
    assert slow_processing_sandbox.list_members(list_id) == expected["regular"]
    summary = demo.read_xcom(MANUAL, "wait_for_import", run_id=run_id)
    assert summary["done"] is True
    assert summary["totals"]["items_total_count"] == len(expected["regular"])


@pytest.mark.parametrize(
    "flag",
    [
        "plan_only",
        # The form's old name: a script that still triggers with it must get a plan, never an export.
        "dry_run",
    ],
)
def test_manual_dag_plan_only_sends_nothing(airflow_db, slow_processing_sandbox, segment, flag):
    source, expected = segment
    list_id = slow_processing_sandbox.create_list("Plan only")
    conf = {"source": str(source), "list_ids": [list_id], flag: True}
    since = len(slow_processing_sandbox.request_log)

    result = airflow_dags_test(
        MANUAL,
        env={"AIRFLOW_CONN_CONSTANTCONTACT_DEFAULT": slow_processing_sandbox.connection_json()},
        conf=json.dumps(conf),
    )

    assert result.returncode == 0, describe(result)
    run_id, state = latest_run(MANUAL)
    assert state == "success"
    states = task_states(MANUAL, run_id)
    assert states["plan_only_export"] == "success"
    assert states["export_segment"] == "skipped"
    assert states["wait_for_import"] == "skipped"
    assert slow_processing_sandbox.list_members(list_id) == {}
    assert not [e for e in slow_processing_sandbox.request_log[since:] if "import" in e.path]
    plan = demo.read_xcom(MANUAL, "plan_only_export", run_id=run_id)
    assert plan["plan_only"] is True
    assert plan["dry_run"] is True  # the summary's old key, kept until 0.2.0
    # No segment chosen: every valid, de-duplicated row of both segments would have been sent.
    assert plan["contacts_submitted"] == len(expected["vip"]) + len(expected["regular"])


def test_failed_import_fails_the_sensor_with_the_activity_error(airflow_db, slow_processing_sandbox, segment):
    source, _ = segment
    list_id = slow_processing_sandbox.create_list("Doomed")
    slow_processing_sandbox.fail_next_activity(
        errors=["Import rejected by Constant Contact: account under review"]
    )
    config = {"source": str(source), "list_ids": [list_id], "segment_column": "segment", "segments": ["vip"]}

    result = airflow_dags_test(
        SCHEDULED,
        env={
            "AIRFLOW_CONN_CONSTANTCONTACT_DEFAULT": slow_processing_sandbox.connection_json(),
            "AIRFLOW_VAR_CONSTANTCONTACT_SEGMENT_EXPORT": json.dumps(config),
        },
    )

    run_id, state = latest_run(SCHEDULED)
    assert state == "failed", describe(result)
    assert task_states(SCHEDULED, run_id) == {"export_segment": "success", "wait_for_import": "failed"}
    output = result.stdout + result.stderr
    assert "ConstantContactImportError" in output
    assert "account under review" in output
    assert demo.read_xcom(SCHEDULED, "wait_for_import", run_id=run_id) is None
