"""The data-aware example DAGs: how they are wired, and the mapped export run against the sandbox.

``constantcontact_segment_refresh`` runs end to end on a real scheduler in
test_standalone_data_aware.py (Asset-triggered runs need one).
"""

from __future__ import annotations

import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_constantcontact.assets import contact_list_asset
from airflow_provider_constantcontact.lineage import CONTACT_LISTS_ALIAS
from tests.system.dag_runs import (
    EXAMPLE_DAGS,
    airflow_dags_test,
    describe,
    latest_run,
    load_demo,
    task_states,
)
from tests.system.test_lineage_dags import asset_events

MANY = "constantcontact_many_segments"
SEGMENTS = ("gold", "silver", "bronze")


@pytest.fixture(scope="module")
def bag():
    from tests.airflow_compat import DagBag

    bag = DagBag(dag_folder=str(EXAMPLE_DAGS))
    assert bag.import_errors == {}
    return bag


def test_segment_refresh_dags_are_connected_by_assets(bag):
    producer = bag.dags["constantcontact_segment_refresh"]
    export_dag = bag.dags["constantcontact_segment_refresh_export"]
    consumer = bag.dags["constantcontact_list_updated"]

    (segment,) = producer.get_task("refresh_segment").outlets
    assert segment.uri.startswith("file:///")
    # The export is scheduled on the segment's Asset, reads it (its inlet) and emits list events.
    assert list(export_dag.timetable.asset_condition.objects) == [segment]
    export = export_dag.get_task("export_segment")
    assert export.inlets == [segment]
    assert export.outlets == [CONTACT_LISTS_ALIAS]
    assert export.deferrable is True
    # The consumer is scheduled on the list Asset(s) (placeholders without the Variable).
    assert list(consumer.timetable.asset_condition.objects) == [
        contact_list_asset("00000000-0000-0000-0000-000000000000")
    ]
    # Its dict of list URIs is one XCom: a key per URI ("/" in it) fails the task on Airflow 3.0.
    assert consumer.get_task("report_list_update").multiple_outputs is False


def test_many_segments_maps_the_export_in_one_pool_with_one_sensor(bag):
    dag = bag.dags[MANY]
    export = dag.get_task("export_segment")
    assert export.is_mapped
    assert export.partial_kwargs["pool"] == "constantcontact_api"
    assert dag.get_task("wait_for_imports").deferrable is True
    assert dag.get_task("wait_for_imports").upstream_task_ids == {"all_activity_ids"}


def write_customers(path, rows: int = 240, seed: int = 5) -> dict[str, set[str]]:
    """Customers of three segments (some emails in other casing): segment -> expected emails."""
    rng = random.Random(seed)
    columns: dict[str, list] = {"email": [], "first_name": [], "last_name": [], "loyalty_tier": []}
    columns["segment"] = []
    expected: dict[str, set[str]] = {segment: set() for segment in SEGMENTS}
    for n in range(rows):
        segment = rng.choice(SEGMENTS)
        email = f"Member.{n}@Example.com" if n % 4 == 0 else f"member.{n}@example.com"
        columns["email"].append(email)
        columns["first_name"].append(rng.choice(["Ada", "Alan", "Grace"]))
        columns["last_name"].append(rng.choice(["Lovelace", "Turing", "Hopper"]))
        columns["loyalty_tier"].append(segment)
        columns["segment"].append(segment)
        expected[segment].add(email.lower())
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)
    return expected


def ensure_pool(name: str, slots: int) -> None:
    from airflow.models.pool import Pool
    from airflow.utils.session import create_session

    with create_session() as session:
        pool = session.query(Pool).filter(Pool.pool == name).one_or_none()
        if pool is None:
            session.add(
                Pool(pool=name, slots=slots, description="Constant Contact API", include_deferred=False)
            )


def test_many_segments_exports_each_segment_to_its_lists(airflow_db, constantcontact_sandbox, tmp_path):
    sandbox = constantcontact_sandbox
    sandbox.processing_rate = 50  # the one sensor finds the imports running and defers
    source = tmp_path / "crm" / "customers.parquet"
    expected = write_customers(source)
    list_ids = {segment: sandbox.create_list(f"{segment.title()} members") for segment in SEGMENTS}
    config = {
        "source": str(source),
        "segment_column": "segment",
        "exports": [{"segments": [segment], "list_ids": [list_ids[segment]]} for segment in SEGMENTS],
    }
    ensure_pool("constantcontact_api", 1)

    result = airflow_dags_test(
        MANY,
        env={
            "AIRFLOW_CONN_CONSTANTCONTACT_DEFAULT": sandbox.connection_json(),
            "AIRFLOW_VAR_CONSTANTCONTACT_MANY_SEGMENTS": json.dumps(config),
        },
    )

    assert result.returncode == 0, describe(result)
    run_id, state = latest_run(MANY)
    assert state == "success"
    assert task_states(MANY, run_id) == {
        "plan_exports": "success",
        "export_segment": "success",
        "all_activity_ids": "success",
        "wait_for_imports": "success",
    }
    # Each list holds exactly its segment's contacts, with the mapped fields.
    for segment, list_id in list_ids.items():
        members = sandbox.list_members(list_id)
        assert set(members) == expected[segment], segment
        assert {fields["cf:loyalty_tier"] for fields in members.values()} == {segment}
    # Three mapped exports, one sensor for all their activities.
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        mapped = (
            session.query(TaskInstance)
            .filter_by(dag_id=MANY, run_id=run_id, task_id="export_segment")
            .order_by(TaskInstance.map_index)
            .all()
        )
        assert [(ti.map_index, ti.state, ti.pool) for ti in mapped] == [
            (index, "success", "constantcontact_api") for index in range(3)
        ]
        assert [ti.rendered_map_index for ti in mapped] == list(SEGMENTS)
    # The one sensor waited for the three exports' activities.
    summary = load_demo().read_xcom(MANY, "wait_for_imports", run_id=run_id)
    assert len(summary["activities"]) == 3
    assert summary["totals"]["items_total_count"] == sum(len(emails) for emails in expected.values())
    # Each mapped export emitted its list's event, through the alias it added to its own outlets.
    events = asset_events(MANY, run_id)
    assert sorted((event["uri"], event["extra"]["contacts_submitted"]) for event in events) == sorted(
        (contact_list_asset(list_ids[segment]).uri, len(expected[segment])) for segment in SEGMENTS
    )
    imports = [
        e for e in sandbox.request_log if e.method == "POST" and e.path.endswith("contacts_json_import")
    ]
    assert len(imports) == 3
