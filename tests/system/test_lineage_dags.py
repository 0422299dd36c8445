"""Asset events, inlets and OpenLineage of the export under `airflow dags test`, against the sandbox.

The DAG (tests/system/lineage_dags/) exports the "vip" rows of a sample segment, given as a
``file://`` URI, to two lists. One real run is shared by the tests that read what it recorded:
the list Asset events and the task's inlet in the metadata DB, and the OpenLineage events the
provider's file transport wrote (apache-airflow-providers-openlineage is installed by the
``openlineage`` extra, which scripts/setup installs).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_provider_constantcontact.assets import contact_list_asset
from airflow_provider_constantcontact.sandbox.emulator import ConstantContactSandbox
from tests.airflow_compat import AIRFLOW
from tests.system.dag_runs import (
    airflow_dags_test,
    describe,
    latest_run,
    load_demo,
    register_assets_for_dags_test,
    task_states,
)

DAGS = Path(__file__).parent / "lineage_dags"
DAG_ID = "constantcontact_lineage_check"
TASK_ID = "export_segment"
#: One worker runs the whole module under pytest-xdist (--dist loadgroup): one export for all.
pytestmark = pytest.mark.xdist_group("lineage_dags")

demo = load_demo()


def asset_events(dag_id: str, run_id: str) -> list[dict]:
    """The Asset events one run's tasks recorded: uri, extra, source task, aliases."""
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        events = session.scalars(
            select(AssetEvent).where(AssetEvent.source_dag_id == dag_id, AssetEvent.source_run_id == run_id)
        ).all()
        return [
            {
                "uri": event.asset.uri,
                "extra": event.extra,
                "task_id": event.source_task_id,
                "aliases": sorted(alias.name for alias in event.source_aliases),
            }
            for event in events
        ]


def task_inlets(dag_id: str, task_id: str) -> list[str]:
    """URIs of the Assets recorded as the task's inlets when the DAG was parsed.

    Airflow 3.0 has no inlet reference table: there the serialized task in the DB says it.
    """
    if AIRFLOW < (3, 1):
        from airflow.models.serialized_dag import SerializedDagModel

        task = SerializedDagModel.get_dag(dag_id).get_task(task_id)
        return [inlet.uri for inlet in task.inlets]
    from airflow.models.asset import TaskInletAssetReference
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        refs = session.scalars(
            select(TaskInletAssetReference).where(
                TaskInletAssetReference.dag_id == dag_id, TaskInletAssetReference.task_id == task_id
            )
        ).all()
        return [ref.asset.uri for ref in refs]


def run_export(sandbox: ConstantContactSandbox, source: Path, list_ids: list[str], **env: str):
    env = {
        "AIRFLOW_CONN_CONSTANTCONTACT_DEFAULT": sandbox.connection_json(),
        "CC_LINEAGE_SOURCE": source.as_uri(),
        "CC_LINEAGE_LIST_IDS": ",".join(list_ids),
        **env,
    }
    register_assets_for_dags_test(env=env, dags_folder=DAGS)  # the source is the task's inlet
    return airflow_dags_test(DAG_ID, env=env, dags_folder=DAGS)


@pytest.fixture(scope="module")
def export_run(airflow_db, tmp_path_factory):
    """One real export of the "vip" segment to two lists, with OpenLineage writing to a file."""
    folder = tmp_path_factory.mktemp("lineage")
    source = folder / "customers.parquet"
    expected = demo.generate_segment(source, rows=300, seed=21)
    events_file = folder / "openlineage.jsonl"
    with ConstantContactSandbox(
        rate_limit=0, token_rate_limit=0, processing_rate=None, custom_fields=["loyalty_tier"]
    ) as sandbox:
        list_ids = [sandbox.create_list("VIP"), sandbox.create_list("VIP copy")]
        result = run_export(
            sandbox,
            source,
            list_ids,
            AIRFLOW__OPENLINEAGE__TRANSPORT=json.dumps(
                {"type": "file", "log_file_path": str(events_file), "append": True}
            ),
            AIRFLOW__OPENLINEAGE__NAMESPACE="constantcontact_tests",
        )
        members = {list_id: sandbox.list_members(list_id) for list_id in list_ids}
    assert result.returncode == 0, describe(result)
    run_id, state = latest_run(DAG_ID)
    assert state == "success"
    assert task_states(DAG_ID, run_id) == {TASK_ID: "success"}
    return {
        "run_id": run_id,
        "source": source,
        "list_ids": list_ids,
        "expected": expected["vip"],
        "members": members,
        "openlineage": events_file,
    }


def test_export_emits_a_list_asset_event_per_list_with_counts_and_no_personal_data(export_run):
    expected = export_run["expected"]
    # The DAG maps no last name: compare the contacts, not every field.
    assert all(set(members) == set(expected) for members in export_run["members"].values())

    events = asset_events(DAG_ID, export_run["run_id"])
    assert sorted(event["uri"] for event in events) == sorted(
        contact_list_asset(list_id).uri for list_id in export_run["list_ids"]
    )
    for event in events:
        assert event["extra"] == {"contacts_submitted": len(expected)}
        assert event["task_id"] == TASK_ID
        assert event["aliases"] == ["constantcontact_contact_lists"]
    # Not an email, nor any other value of the segment, anywhere in what was recorded.
    recorded = json.dumps(events).lower()
    assert "@" not in recorded
    values = {value.lower() for fields in expected.values() for value in fields.values()}
    assert not [value for value in values | set(expected) if value in recorded]


def test_a_uri_source_is_recorded_as_the_export_tasks_inlet(export_run):
    assert task_inlets(DAG_ID, TASK_ID) == [export_run["source"].as_uri()]


def test_openlineage_complete_event_names_the_parquet_input_and_each_list(export_run):
    events = [json.loads(line) for line in export_run["openlineage"].read_text().splitlines() if line]
    (complete,) = [
        event
        for event in events
        if event["eventType"] == "COMPLETE" and event["job"]["name"] == f"{DAG_ID}.{TASK_ID}"
    ]
    assert complete["job"]["namespace"] == "constantcontact_tests"
    assert [(d["namespace"], d["name"]) for d in complete["inputs"]] == [("file", str(export_run["source"]))]
    outputs = {(d["namespace"], d["name"]): d for d in complete["outputs"]}
    assert set(outputs) == {("constantcontact", f"lists/{list_id}") for list_id in export_run["list_ids"]}
    for output in outputs.values():
        if AIRFLOW < (3, 1):
            # Documented degradation: 3.0's listener calls the facets on another operator object
            # than the one that ran, so the run's counts are not there; datasets and columns are.
            assert "outputStatistics" not in output["outputFacets"]
            continue
        assert output["outputFacets"]["outputStatistics"]["rowCount"] == len(export_run["expected"])
        column_lineage = output["facets"]["columnLineage"]
        assert {
            field: [(i["namespace"], i["name"], i["field"]) for i in lineage["inputFields"]]
            for field, lineage in column_lineage["fields"].items()
        } == {
            field: [("file", str(export_run["source"]), column)]
            for field, column in {
                "email": "email",
                "first_name": "first_name",
                "cf:loyalty_tier": "loyalty_tier",
            }.items()
        }
        assert {i["field"] for i in column_lineage["dataset"]} == {"email", "segment"}
    assert "@" not in json.dumps(complete["outputs"])


def test_a_plan_only_run_emits_no_list_event(airflow_db, constantcontact_sandbox, tmp_path):
    source = tmp_path / "customers.parquet"
    demo.generate_segment(source, rows=100, seed=22)
    list_id = constantcontact_sandbox.create_list("Plan only")

    result = run_export(constantcontact_sandbox, source, [list_id], CC_LINEAGE_PLAN_ONLY="1")

    assert result.returncode == 0, describe(result)
    run_id, state = latest_run(DAG_ID)
    assert state == "success"
    assert asset_events(DAG_ID, run_id) == []
    assert constantcontact_sandbox.list_members(list_id) == {}
