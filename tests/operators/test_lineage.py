"""lineage.py on its own and wired into the export operator (no Airflow run; see tests/system)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap

import pytest
from airflow.sdk import Asset, ObjectStoragePath
from airflow.sdk.execution_time.context import OutletEventAccessors

from airflow_provider_constantcontact import lineage
from airflow_provider_constantcontact.assets import contact_list_asset
from airflow_provider_constantcontact.operators.constantcontact import ConstantContactSegmentExportOperator
from tests.airflow_compat import TaskDeferred
from tests.conftest import REPO_ROOT
from tests.operators.conftest import FakeTI, write_parquet

A = "50acf410-0724-41af-b354-3c170e68ca6f"
B = "0d4c2a1e-9f3b-4c55-8a6e-1b2c3d4e5f60"
EMAILS = ["ann@example.com", "bob@example.com", "not-an-email"]


def alias_events(accessors: OutletEventAccessors) -> list[tuple[str, dict]]:
    return [
        (event.dest_asset_key.uri, event.extra)
        for event in accessors[lineage.CONTACT_LISTS_ALIAS].asset_alias_events
    ]


# ---------------------------------------------------------------------------------- inlets
@pytest.mark.parametrize(
    ("source", "uri"),
    [
        ("file:///data/segments/vip.parquet", "file:///data/segments/vip.parquet"),
        ("/data/segments/vip/", "file:///data/segments/vip"),
        ("s3://aws_default@crm/segments/vip/", "s3://crm/segments/vip/"),
        ("gs://bucket/segment.parquet", "gs://bucket/segment.parquet"),
        ("segments/vip.parquet", None),  # relative: not an Asset
        ("s3://crm/segments/*.parquet", None),  # a glob names no one Asset
        ("{{ var.value.segment }}", None),  # known only when rendered
        ("s3:///no-bucket", None),
    ],
)
def test_source_asset_uri(source, uri):
    assert lineage.source_asset_uri(source) == uri


def test_operator_records_a_uri_or_object_storage_source_as_inlet_and_adds_the_alias():
    operator = ConstantContactSegmentExportOperator(
        task_id="t",
        source=["file:///data/a.parquet", ObjectStoragePath("file:///data/b.parquet"), "{{ ds }}.parquet"],
        list_ids=[A],
        field_mapping={"email": "email"},
        inlets=[Asset(uri="file:///data/a.parquet")],
        outlets=[Asset(uri="file:///data/report.csv")],
    )
    assert [inlet.uri for inlet in operator.inlets] == ["file:///data/a.parquet", "file:///data/b.parquet"]
    assert operator.outlets == [Asset(uri="file:///data/report.csv"), lineage.CONTACT_LISTS_ALIAS]
    # The ObjectStoragePath reaches the reader as its URI string.
    assert operator.source[1] == "file:///data/b.parquet"
    lineage.declare_lineage(operator, operator.source)  # idempotent
    assert operator.outlets.count(lineage.CONTACT_LISTS_ALIAS) == 1
    assert len(operator.inlets) == 2


def test_templated_source_has_no_inlet_but_the_alias_outlet():
    operator = ConstantContactSegmentExportOperator(
        task_id="t", source="{{ params.source }}", list_ids=[A], field_mapping={"email": "email"}
    )
    assert operator.inlets == []
    assert operator.outlets == [lineage.CONTACT_LISTS_ALIAS]


def test_object_storage_path_keeps_its_connection_for_the_reader():
    path = ObjectStoragePath("s3://crm/segments/vip/", conn_id="aws_default")
    assert lineage.plain_source(path) == "s3://aws_default@crm/segments/vip"
    assert lineage.plain_source([path]) == ["s3://aws_default@crm/segments/vip"]
    assert lineage.source_asset_uri(lineage.plain_source(path)) == "s3://crm/segments/vip"


# ------------------------------------------------------------------------------ list events
def test_changed_lists_counts_imports_and_mirror_removals():
    summary = {"list_ids": [A, B], "contacts_submitted": 5, "plan_only": False, "activity_ids": ["x"]}
    assert lineage.changed_lists(summary) == {A: {"contacts_submitted": 5}, B: {"contacts_submitted": 5}}
    # Mirror mode: nothing imported, members removed from one list only.
    mirror = {**summary, "contacts_submitted": 0, "removed": {A.upper(): 3, B: 0}}
    assert lineage.changed_lists(mirror) == {A: {"contacts_submitted": 0, "contacts_removed": 3}}
    both = {**summary, "removed": {B: 2}}
    assert lineage.changed_lists(both) == {
        A: {"contacts_submitted": 5, "contacts_removed": 0},
        B: {"contacts_submitted": 5, "contacts_removed": 2},
    }
    assert lineage.changed_lists({**summary, "plan_only": True}) == {}
    assert lineage.changed_lists({**summary, "contacts_submitted": 0}) == {}
    assert lineage.changed_lists(None) == {}
    # An id that is not a UUID names no Asset: skipped, not a failed export.
    assert lineage.changed_lists({**summary, "list_ids": ["not-a-uuid", A]}) == {A: {"contacts_submitted": 5}}


def test_emit_list_events_through_the_alias_with_counts_only():
    accessors = OutletEventAccessors()
    summary = {"list_ids": [A.upper()], "contacts_submitted": 7, "plan_only": False, "activity_ids": ["x"]}
    emitted = lineage.emit_list_events({"outlet_events": accessors}, summary)
    assert emitted == [contact_list_asset(A)]
    assert alias_events(accessors) == [(f"constantcontact://lists/{A}", {"contacts_submitted": 7})]
    dry = OutletEventAccessors()
    assert lineage.emit_list_events({"outlet_events": dry}, {**summary, "plan_only": True}) == []
    assert alias_events(dry) == []


def test_export_emits_an_event_per_list_and_none_on_a_plan_only_run(make_export, newsletter, tmp_path):
    source = write_parquet(tmp_path / "s.parquet", {"Email": EMAILS})
    accessors = OutletEventAccessors()
    summary = make_export(source=str(source), field_mapping={"email": "Email"}).execute(
        {"ti": FakeTI(), "outlet_events": accessors}
    )
    assert summary["contacts_submitted"] == 2
    events = alias_events(accessors)
    assert events == [(contact_list_asset(newsletter).uri, {"contacts_submitted": 2})]
    assert "@" not in json.dumps(events)

    dry = OutletEventAccessors()
    make_export(source=str(source), field_mapping={"email": "Email"}, plan_only=True).execute(
        {"ti": FakeTI(), "outlet_events": dry}
    )
    assert alias_events(dry) == []


def test_deferred_export_emits_again_from_execute_complete(
    make_export, constantcontact_sandbox, newsletter, tmp_path, monkeypatch, airflow_db
):
    """The deferral's process is gone on resume: execute_complete emits into its own context."""
    monkeypatch.setenv("AIRFLOW_CONN_CONSTANTCONTACT_DEFAULT", constantcontact_sandbox.connection_json())
    source = write_parquet(tmp_path / "s.parquet", {"Email": EMAILS})
    operator = make_export(
        source=str(source), field_mapping={"email": "Email"}, wait_for_completion=True, deferrable=True
    )
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute({"ti": FakeTI(), "outlet_events": OutletEventAccessors()})

    async def first_event() -> dict:
        async for event in deferred.value.trigger.run():
            return event.payload
        raise AssertionError("no event")

    resumed = OutletEventAccessors()
    operator.execute_complete(
        {"ti": FakeTI(), "outlet_events": resumed},
        asyncio.run(first_event()),
        **(deferred.value.kwargs or {}),
    )
    assert alias_events(resumed) == [(contact_list_asset(newsletter).uri, {"contacts_submitted": 2})]


# ------------------------------------------------------------------------------ OpenLineage
@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("/data/segments/vip.parquet", [("file", "/data/segments/vip.parquet")]),
        ("file:///data/segments/", [("file", "/data/segments")]),
        ("s3://aws_default@crm/segments/vip/", [("s3://crm", "segments/vip")]),
        ("gs://bucket/seg/*/part-*.parquet", [("gs://bucket", "seg")]),
        (["s3://crm/a.parquet", "s3://crm/a.parquet"], [("s3://crm", "a.parquet")]),
    ],
)
def test_source_dataset_ids_follow_openlineage_naming(source, expected):
    assert lineage.source_dataset_ids(source) == expected


def test_openlineage_facets_of_an_export(make_export, newsletter, tmp_path):
    pytest.importorskip("airflow.providers.openlineage")
    source = write_parquet(tmp_path / "s.parquet", {"Email": EMAILS, "First": ["A", "B", "C"]})
    operator = make_export(source=str(source), field_mapping={"email": "Email", "first_name": "First"})
    # Airflow's context holds the running task: the summary is left on it for OpenLineage.
    operator.execute({"ti": FakeTI(), "outlet_events": OutletEventAccessors(), "task": operator})
    facets = lineage.openlineage_facets(operator)
    assert [(d.namespace, d.name) for d in facets.inputs] == [("file", str(source))]
    (output,) = facets.outputs
    assert (output.namespace, output.name) == ("constantcontact", f"lists/{newsletter}")
    assert output.outputFacets["outputStatistics"].rowCount == 2
    lineage_facet = output.facets["columnLineage"]
    assert {field: [i.field for i in f.inputFields] for field, f in lineage_facet.fields.items()} == {
        "email": ["Email"],
        "first_name": ["First"],
    }
    assert operator.get_openlineage_facets_on_complete(None).outputs == facets.outputs

    dry = make_export(source=str(source), field_mapping={"email": "Email"}, plan_only=True)
    dry.execute({"ti": FakeTI(), "outlet_events": OutletEventAccessors(), "task": dry})
    assert lineage.openlineage_facets(dry).outputs == []


BLOCKED_RUN = textwrap.dedent(
    """
    import importlib.abc, json, sys, tempfile

    BLOCKED = ("openlineage", "airflow.providers.openlineage", "airflow.providers.common.compat.openlineage")
    attempts = []

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.startswith(BLOCKED):
                attempts.append(name)
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
            return None

    class HideDistributions:
        # Wraps a meta path finder: OpenLineage's distributions look uninstalled too.

        def __init__(self, finder):
            self.finder = finder

        def __getattr__(self, name):
            return getattr(self.finder, name)

        def find_spec(self, *args, **kwargs):
            find_spec = getattr(self.finder, "find_spec", None)
            return find_spec(*args, **kwargs) if find_spec else None

        def find_distributions(self, *args, **kwargs):
            for dist in getattr(self.finder, "find_distributions", lambda *a, **k: [])(*args, **kwargs):
                name = (dist.metadata["Name"] or "").lower().replace("_", "-")
                if not name.startswith(("openlineage", "apache-airflow-providers-openlineage")):
                    yield dist

    import importlib_metadata  # noqa: F401 - installs its own distribution finder: wrap that one too

    sys.meta_path[:] = [Block()] + [HideDistributions(finder) for finder in sys.meta_path]
    for name in [n for n in sys.modules if n.startswith(BLOCKED)]:
        del sys.modules[name]

    import pyarrow as pa, pyarrow.parquet as pq
    from airflow.sdk.execution_time.context import OutletEventAccessors
    from airflow_provider_constantcontact import lineage
    from airflow_provider_constantcontact.operators.constantcontact import (
        ConstantContactSegmentExportOperator,
    )
    from airflow_provider_constantcontact.sandbox.emulator import ConstantContactSandbox
    from tests.operators.conftest import FakeTI, sandbox_hook

    path = tempfile.mkdtemp() + "/s.parquet"
    pq.write_table(pa.table({"Email": ["ann@example.com", "bob@example.com"]}), path)
    with ConstantContactSandbox(rate_limit=0, token_rate_limit=0, processing_rate=None) as sandbox:
        list_id = sandbox.create_list("No lineage")
        operator = ConstantContactSegmentExportOperator(
            task_id="t", source="file://" + path, list_ids=[list_id], field_mapping={"email": "Email"},
            wait_for_completion=False,
        )
        operator.hook = sandbox_hook(sandbox)
        accessors = OutletEventAccessors()
        summary = operator.execute({"ti": FakeTI(), "outlet_events": accessors})
        members = len(sandbox.list_members(list_id))
    attempts_before_facets = list(attempts)
    loaded_before_facets = sorted(n for n in sys.modules if n.startswith(BLOCKED))
    try:
        operator.get_openlineage_facets_on_complete(None)
        facets_error = None
    except ImportError as err:
        facets_error = type(err).__name__
    print(json.dumps({
        "contacts_submitted": summary["contacts_submitted"],
        "members": members,
        "events": len(accessors[lineage.CONTACT_LISTS_ALIAS].asset_alias_events),
        "inlets": [inlet.uri for inlet in operator.inlets],
        "attempts_before_facets": attempts_before_facets,
        "loaded_before_facets": loaded_before_facets,
        "facets_error": facets_error,
    }))
    """
)


@pytest.mark.system  # a Python process that loads Airflow and runs the export: about 20 s
def test_without_openlineage_the_export_works_and_imports_nothing_of_it():
    """OpenLineage blocked: export, inlet and events as usual; only the OpenLineage method tries it."""
    result = subprocess.run(
        [sys.executable, "-c", BLOCKED_RUN],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["contacts_submitted"] == 2
    assert outcome["members"] == 2
    assert outcome["events"] == 1
    assert len(outcome["inlets"]) == 1
    assert outcome["inlets"][0].startswith("file:///")
    # Nothing asked for OpenLineage: not importing the package, nor running the export.
    assert outcome["attempts_before_facets"] == []
    assert outcome["loaded_before_facets"] == []
    # Only get_openlineage_facets_on_complete, which Airflow calls only when the provider is
    # installed, asks for it, and fails cleanly.
    assert outcome["facets_error"] in ("ModuleNotFoundError", "ImportError")


def test_mirror_run_emits_removals_too_and_a_removal_only_list_gets_its_event(
    make_export, constantcontact_sandbox, tmp_path
):
    """Mirror mode: the event of each list counts the members removed from it."""
    keep = constantcontact_sandbox.create_list("Keep")
    shrink = constantcontact_sandbox.create_list("Shrink")
    constantcontact_sandbox.add_list_members(keep, ["ann@example.com", "bob@example.com"])
    constantcontact_sandbox.add_list_members(shrink, ["ann@example.com", "bob@example.com", "cy@example.com"])
    source = write_parquet(tmp_path / "s.parquet", {"Email": ["ann@example.com", "bob@example.com"]})
    operator = make_export(
        source=str(source),
        list_ids=[keep, shrink],
        field_mapping={"email": "Email"},
        sync_mode="mirror",
        max_removal_ratio=0.5,
    )
    accessors = OutletEventAccessors()
    summary = operator.execute({"ti": FakeTI(), "outlet_events": accessors, "task": operator})
    assert summary["removed"] == {keep: 0, shrink: 1}
    assert sorted(alias_events(accessors)) == sorted(
        [
            (contact_list_asset(keep).uri, {"contacts_submitted": 2, "contacts_removed": 0}),
            (contact_list_asset(shrink).uri, {"contacts_submitted": 2, "contacts_removed": 1}),
        ]
    )
