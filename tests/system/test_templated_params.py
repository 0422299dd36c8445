"""Templated parameters and the deferrable export through real Jinja rendering (`airflow dags test`).

Issue 13, defects 1 and 5. Without ``render_template_as_native_obj`` Jinja renders a list
param as its Python text (``"['Lapsed, high value']"``), a dict as text, a number as ``"5"``;
each templated parameter of the export operator and the import sensor must come out exactly
as given, with either kind of rendering. And ``deferrable=True`` on the export must survive
``airflow dags test``, which resumes the task with the trigger's event only.
"""

from __future__ import annotations

import json
from textwrap import dedent

import pytest

from airflow_provider_constantcontact.export.summary import ExportSummary
from airflow_provider_constantcontact.utils.activities import ActivitiesSummary
from tests.operators.conftest import imports_in_log, write_parquet
from tests.system.dag_runs import airflow_dags_test, describe, latest_run, load_demo, task_states

DAG_FILE = dedent(
    '''
    """Probe DAGs: every templated parameter from the run's conf, rendered natively or as text."""
    import pendulum
    from airflow.sdk import dag, task

    from airflow_provider_constantcontact.operators.constantcontact import (
        ConstantContactSegmentExportOperator,
    )
    from airflow_provider_constantcontact.sensors.constantcontact import ConstantContactImportSensor


    def templated_probe(dag_id, native):
        @dag(
            dag_id=dag_id,
            schedule=None,
            start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
            catchup=False,
            render_template_as_native_obj=native,
            params={
                "sources": [],
                "list_ids": [],
                "segments": [],
                "mapping": {},
                "max_contacts": 5,
                "max_error_ratio": 0.1,
            },
        )
        def probe():
            export = ConstantContactSegmentExportOperator(
                task_id="export",
                source="{{ params.sources }}",
                list_ids="{{ params.list_ids }}",
                field_mapping="{{ params.mapping | tojson }}",
                segment_column="Segment",
                segments="{{ params.segments }}",
                max_contacts="{{ params.max_contacts }}",
                max_error_ratio="{{ params.max_error_ratio }}",
                wait_for_completion=True,
                deferrable=False,
                poll_interval=0.2,
            )
            wait = ConstantContactImportSensor(
                task_id="wait",
                activity_ids="{{ ti.xcom_pull(task_ids='export', key='activity_ids') }}",
                max_error_ratio="{{ params.max_error_ratio }}",
                mode="poke",
                deferrable=False,
                poke_interval=1,
                timeout=120,
            )
            export >> wait

        probe()


    templated_probe("cc_params_native", True)
    templated_probe("cc_params_text", False)


    @dag(
        dag_id="cc_deferrable_export",
        schedule=None,
        start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
        catchup=False,
        params={"source": "", "list_id": ""},
    )
    def deferrable_probe():
        export = ConstantContactSegmentExportOperator(
            task_id="export",
            source="{{ params.source }}",
            list_ids="{{ params.list_id }}",
            field_mapping={"email": "Email", "first_name": "First"},
            wait_for_completion=True,
            deferrable=True,
            poll_interval=0.2,
        )

        @task
        def check(activity_ids, summary):
            if not activity_ids or activity_ids != summary["activity_ids"]:
                raise RuntimeError(f"activity_ids XCom {activity_ids!r} != summary {summary!r}")

        check(export.output["activity_ids"], export.output)


    deferrable_probe()
    '''
)

# Segment names Jinja's text rendering mangles in different ways: a comma (split by a naive
# parser), a backslash (doubled in the Python repr), quotes of both kinds.
SEGMENTS = ["Lapsed, high value", "back\\slash", 'Tom\'s "picks"']


@pytest.fixture
def dags_folder(tmp_path):
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "cc_probes.py").write_text(DAG_FILE)
    return dags


@pytest.mark.parametrize("dag_id", ["cc_params_native", "cc_params_text"])
def test_templated_parameters_survive_rendering(
    airflow_db, constantcontact_sandbox, dags_folder, tmp_path, dag_id
):
    sandbox = constantcontact_sandbox
    newsletter = sandbox.list_ids["Newsletter"]
    lapsed = sandbox.create_list("Lapsed")
    first = write_parquet(
        tmp_path / "data" / "a.parquet",
        {
            "Email": ["a1@example.com", "a2@example.com", "a3@example.com", "a4@example.com"],
            "Name": ["A1", "A2", "A3", "A4"],
            "Tier": ["gold", "silver", "bronze", "tin"],
            "Segment": ["Lapsed, high value", "Lapsed", " high value", 'Tom\'s "picks"'],
        },
    )
    second = write_parquet(
        tmp_path / "data" / "b.parquet",
        {
            "Email": ["b1@example.com", "b2@example.com", "b3@example.com", "b4@example.com"],
            "Name": ["B1", "B2", "B3", "B4"],
            "Tier": ["gold", "silver", "bronze", "tin"],
            "Segment": ["back\\slash", "back\\\\slash", "Lapsed, high value", "VIP"],
        },
    )
    conf = {
        "sources": [str(first), str(second)],
        "list_ids": [newsletter, lapsed],
        "segments": SEGMENTS,
        "mapping": {"email": "Email", "first_name": "Name", "cf:loyalty_tier": "Tier"},
        "max_contacts": 5,
        "max_error_ratio": 0.1,
    }

    result = airflow_dags_test(
        dag_id,
        env={"AIRFLOW_CONN_CONSTANTCONTACT_DEFAULT": sandbox.connection_json()},
        conf=json.dumps(conf),
        dags_folder=dags_folder,
        timeout=300,
    )

    assert result.returncode == 0, describe(result)
    run_id, state = latest_run(dag_id)
    assert state == "success", describe(result)
    assert task_states(dag_id, run_id) == {"export": "success", "wait": "success"}
    expected = {
        "a1@example.com": {"first_name": "A1", "cf:loyalty_tier": "gold"},
        "a4@example.com": {"first_name": "A4", "cf:loyalty_tier": "tin"},
        "b1@example.com": {"first_name": "B1", "cf:loyalty_tier": "gold"},
        "b3@example.com": {"first_name": "B3", "cf:loyalty_tier": "bronze"},
    }
    assert sandbox.list_members(newsletter) == expected
    assert sandbox.list_members(lapsed) == expected
    demo = load_demo()
    summary = demo.read_xcom(dag_id, "export", run_id=run_id)
    assert summary["files"] == 2
    assert summary["rows_read"] == 4
    assert summary["rows_filtered_out"] == 4
    assert summary["contacts_submitted"] == 4
    assert sorted(summary["list_ids"]) == sorted([newsletter, lapsed])
    assert summary["items_total_count"] == 4
    # The XComs hold exactly what their types declare (ExportSummary, ActivitiesSummary).
    assert set(summary) <= ExportSummary.__required_keys__ | ExportSummary.__optional_keys__
    waited = demo.read_xcom(dag_id, "wait", run_id=run_id)
    assert set(waited) == ActivitiesSummary.__required_keys__
    assert waited["done"] is True
    assert sorted(waited["activities"]) == sorted(summary["activity_ids"])
    assert waited["totals"]["items_total_count"] == 4


def test_deferrable_export_under_airflow_dags_test(
    airflow_db, constantcontact_sandbox, dags_folder, tmp_path
):
    sandbox = constantcontact_sandbox
    list_id = sandbox.list_ids["Newsletter"]
    source = write_parquet(
        tmp_path / "data" / "segment.parquet",
        {
            "Email": ["d1@example.com", "d2@example.com", "D1@example.com", "nope"],
            "First": ["D1", "D2", "again", "X"],
        },
    )
    dag_id = "cc_deferrable_export"

    result = airflow_dags_test(
        dag_id,
        env={"AIRFLOW_CONN_CONSTANTCONTACT_DEFAULT": sandbox.connection_json()},
        conf=json.dumps({"source": str(source), "list_id": list_id}),
        dags_folder=dags_folder,
        timeout=300,
    )

    assert result.returncode == 0, describe(result)
    run_id, state = latest_run(dag_id)
    assert state == "success", describe(result)
    assert task_states(dag_id, run_id) == {"export": "success", "check": "success"}
    demo = load_demo()
    summary = demo.read_xcom(dag_id, "export", run_id=run_id)
    activity_ids = demo.read_xcom(dag_id, "export", key="activity_ids", run_id=run_id)
    assert len(imports_in_log(sandbox)) == 1
    assert len(activity_ids) == 1
    assert sandbox.get_activity(activity_ids[0])["state"] == "completed"
    assert summary["activity_ids"] == activity_ids
    assert summary["contacts_submitted"] == 2
    assert summary["duplicates"] == 1
    assert summary["rejected"] == {"invalid_email": 1}
    assert summary["items_total_count"] == 2
    assert summary["waited"] is True
    assert summary["activity_states"] == {activity_ids[0]: "completed"}
    assert sandbox.list_members(list_id) == {
        "d1@example.com": {"first_name": "D1"},
        "d2@example.com": {"first_name": "D2"},
    }
