"""Issue 18, sections 4 to 8, through the user's path: `airflow dags test` with a conf, the sandbox over HTTP.

A kill during mirror removals keeps the record of who was removed; lists by name have no
look-alikes; Hive folders are read as pyarrow and Spark write them; text that looks like a list
is one value; the zero-match warning shows no personal data; the guard and the list id messages
say what is true and what to do. Every parameter comes from the run's conf through Jinja, with
and without ``render_template_as_native_obj``.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import unicodedata
from pathlib import Path
from textwrap import dedent
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from tests.operators.conftest import imports_in_log, write_parquet
from tests.system.dag_runs import (
    airflow_dags_test,
    dags_test_killed_when,
    describe,
    latest_run,
    load_demo,
    searchable_output,
)

DAG_FILE = dedent(
    '''
    """Every export parameter from the run's conf, rendered natively or as text."""
    import pendulum
    from airflow.sdk import dag

    from airflow_provider_constantcontact.operators.constantcontact import (
        ConstantContactSegmentExportOperator,
    )


    def export_probe(dag_id, native):
        @dag(
            dag_id=dag_id,
            schedule=None,
            start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
            catchup=False,
            render_template_as_native_obj=native,
            params={
                "source": "",
                "list_ids": None,
                "list_names": None,
                "create_missing_lists": False,
                "mapping": {"email": "email"},
                "segment_column": None,
                "segments": None,
                "sync_mode": "upsert",
                "max_removal_ratio": 0.1,
                "removals_path": None,
            },
        )
        def probe():
            ConstantContactSegmentExportOperator(
                task_id="export",
                source="{{ params.source }}",
                list_ids="{{ params.list_ids }}",
                list_names="{{ params.list_names }}",
                create_missing_lists="{{ params.create_missing_lists }}",
                field_mapping="{{ params.mapping | tojson }}",
                segment_column="{{ params.segment_column }}",
                segments="{{ params.segments }}",
                sync_mode="{{ params.sync_mode }}",
                max_removal_ratio="{{ params.max_removal_ratio }}",
                removals_path="{{ params.removals_path }}",
                wait_for_completion=True,
                deferrable=False,
                poll_interval=0.2,
            )

        probe()


    export_probe("cc_i18_text", False)
    export_probe("cc_i18_native", True)
    '''
)
DAG_IDS = ["cc_i18_text", "cc_i18_native"]
REMOVALS_PATH = "/v3/activities/remove_list_memberships"

demo = load_demo()


@pytest.fixture
def dags_folder(tmp_path: Path) -> Path:
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "cc_i18_probes.py").write_text(DAG_FILE)
    return dags


def run_export(
    sandbox: Any, dags_folder: Path, dag_id: str, **conf: Any
) -> tuple[subprocess.CompletedProcess, str]:
    """`airflow dags test` of a probe DAG with ``conf``; the result and its whole output."""
    result = airflow_dags_test(
        dag_id,
        env={"AIRFLOW_CONN_CONSTANTCONTACT_DEFAULT": sandbox.connection_json()},
        conf=json.dumps(conf),
        dags_folder=dags_folder,
        timeout=300,
    )
    return result, searchable_output(result)


def succeeded(result: subprocess.CompletedProcess, dag_id: str) -> dict[str, Any]:
    """Assert the run succeeded; its export summary."""
    assert result.returncode == 0, describe(result)
    run_id, state = latest_run(dag_id)
    assert state == "success", describe(result)
    return demo.read_xcom(dag_id, "export", run_id=run_id)


def failed(result: subprocess.CompletedProcess, dag_id: str) -> None:
    _, state = latest_run(dag_id)
    assert state == "failed", describe(result)


# ------------------------------------------------------------------ 6. text that looks like a list
@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_text_that_looks_like_a_list_is_one_value(
    airflow_db, constantcontact_sandbox, dags_folder, tmp_path, dag_id
) -> None:
    sandbox = constantcontact_sandbox
    test_list = sandbox.create_list("[TEST] Newsletter")
    source = write_parquet(
        tmp_path / "segment.parquet",
        {
            "email": ["year@example.com", "bracket@example.com", "other@example.com"],
            "segment": ["2024", "[2024]", "2025"],
        },
    )

    result, output = run_export(
        sandbox,
        dags_folder,
        dag_id,
        source=str(source),
        list_names="[TEST] Newsletter",  # one name, given as a plain string in the conf
        segment_column="segment",
        segments="[2024]",  # one segment, literally "[2024]"
    )

    summary = succeeded(result, dag_id)
    assert sandbox.list_member_emails(test_list) == {"bracket@example.com"}  # never segment 2024
    assert summary["rows_read"] == 1
    assert summary["rows_filtered_out"] == 2
    assert "render_template_as_native_obj" not in output


# ------------------------------------------------------------------------- 5. lists by name
def test_list_names_find_the_list_that_reads_the_same_and_create_no_look_alike(
    airflow_db, constantcontact_sandbox, dags_folder, tmp_path
) -> None:
    sandbox = constantcontact_sandbox
    cafe = sandbox.create_list(unicodedata.normalize("NFC", "Café club"))
    spaced = sandbox.create_list("Spaced ")
    lists_before = dict(sandbox.list_ids)
    source = write_parquet(tmp_path / "segment.parquet", {"email": ["ann@example.com", "bob@example.com"]})
    dag_id = "cc_i18_text"

    result, _ = run_export(
        sandbox,
        dags_folder,
        dag_id,
        source=str(source),
        list_names=[unicodedata.normalize("NFD", "Café club"), "Spaced "],
        create_missing_lists=True,
    )

    summary = succeeded(result, dag_id)
    assert sandbox.list_ids == lists_before  # no look-alike created
    assert sorted(summary["list_ids"]) == sorted([cafe, spaced])
    assert "lists_created" not in summary
    for list_id in (cafe, spaced):
        assert sandbox.list_member_emails(list_id) == {"ann@example.com", "bob@example.com"}

    # A second list that reads the same: refused, naming both ids, nothing sent.
    look_alike = sandbox.create_list("Spaced")
    sandbox.clear_request_log()
    result, output = run_export(
        sandbox, dags_folder, dag_id, source=str(source), list_names=["Spaced"], create_missing_lists=True
    )
    failed(result, dag_id)
    assert "2 contact lists read as 'Spaced'" in output
    assert spaced in output
    assert look_alike in output
    assert imports_in_log(sandbox) == []


def test_a_list_created_meanwhile_by_another_run_is_found_not_a_409(
    airflow_db, constantcontact_sandbox, dags_folder, tmp_path
) -> None:
    sandbox = constantcontact_sandbox
    source = write_parquet(tmp_path / "segment.parquet", {"email": ["ann@example.com"]})
    # The other run's POST lands between this run's check of the names and its own POST.
    sandbox.before_next(lambda: sandbox.create_list("Race list"), "/v3/contact_lists", method="POST")
    dag_id = "cc_i18_native"

    result, _ = run_export(
        sandbox, dags_folder, dag_id, source=str(source), list_names=["Race list"], create_missing_lists=True
    )

    summary = succeeded(result, dag_id)
    race = sandbox.list_ids["Race list"]
    assert [name for name in sandbox.list_ids if name.lower() == "race list"] == ["Race list"]
    assert summary["list_ids"] == [race]
    assert sandbox.list_member_emails(race) == {"ann@example.com"}
    creates = [e for e in sandbox.request_log if e.method == "POST" and e.path == "/v3/contact_lists"]
    assert [entry.status for entry in creates] == [409]


# -------------------------------------------------------------------------- 6. Hive folders
def write_spark_style(folder: Path, emails: list[str]) -> None:
    """A partition file named the way Spark names its output (pyspark is not installed here).

    Spark writes ``part-00000-<uuid>.c000.snappy.parquet`` and a ``_SUCCESS`` marker, and escapes a
    partition value's ``"#%'*/:=?\\{[]^``, control characters and DEL as ``%XX``, nothing else.
    """
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table({"email": emails}),
        folder / "part-00000-6f1e1a4e-2c1b-4bb8-9d6c-0c3f2a1b9e77.c000.snappy.parquet",
        compression="snappy",
    )
    (folder.parent / "_SUCCESS").write_text("")


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_hive_folders_are_decoded_as_pyarrow_and_spark_write_them(
    airflow_db, constantcontact_sandbox, dags_folder, tmp_path, dag_id
) -> None:
    sandbox = constantcontact_sandbox
    newsletter = sandbox.list_ids["Newsletter"]
    root = tmp_path / "segments"
    table = pa.table(
        {
            "email": ["lapsed@example.com", "nul@example.com", "vip@example.com"],
            "segment": ["Lapsed, high value", None, "VIP"],
        }
    )
    ds.write_dataset(
        table, root / "pyarrow", format="parquet", partitioning=["segment"], partitioning_flavor="hive"
    )
    assert (root / "pyarrow" / "segment=Lapsed%2C%20high%20value").is_dir()
    assert (root / "pyarrow" / "segment=__HIVE_DEFAULT_PARTITION__").is_dir()
    write_spark_style(root / "spark" / "segment=He said %22hi%22", ["quote@example.com"])
    write_spark_style(root / "spark" / "segment=__HIVE_DEFAULT_PARTITION__", ["null2@example.com"])
    # Spark leaves a comma and spaces as they are; a literal "%2C" there would be an escape.
    write_spark_style(root / "spark" / "segment=Lapsed, high value", ["lapsed2@example.com"])

    result, _ = run_export(
        sandbox,
        dags_folder,
        dag_id,
        source=str(root),
        list_ids=[newsletter],
        segment_column="segment",
        segments=["Lapsed, high value", 'He said "hi"', "__HIVE_DEFAULT_PARTITION__"],
    )

    summary = succeeded(result, dag_id)
    assert sandbox.list_member_emails(newsletter) == {
        "lapsed@example.com",
        "lapsed2@example.com",
        "quote@example.com",
    }
    assert summary["rows_read"] == 3
    assert summary["rows_filtered_out"] == 3  # VIP and the two null partitions


def test_a_segment_column_in_one_file_and_a_folder_key_in_another(
    airflow_db, constantcontact_sandbox, dags_folder, tmp_path
) -> None:
    sandbox = constantcontact_sandbox
    newsletter = sandbox.list_ids["Newsletter"]
    root = tmp_path / "segments"
    write_parquet(root / "segment=VIP" / "part-0.parquet", {"email": ["folder-vip@example.com"]})
    write_parquet(
        root / "extra" / "part-0.parquet",
        {"email": ["column-vip@example.com", "column-new@example.com"], "segment": ["VIP", "New"]},
    )
    dag_id = "cc_i18_text"

    result, _ = run_export(
        sandbox,
        dags_folder,
        dag_id,
        source=str(root),
        list_ids=[newsletter],
        segment_column="segment",
        segments=["VIP"],
    )

    summary = succeeded(result, dag_id)
    assert sandbox.list_member_emails(newsletter) == {"folder-vip@example.com", "column-vip@example.com"}
    assert summary["rows_filtered_out"] == 1


# ------------------------------------------------------------------- 7. no personal data in logs
def test_zero_match_warning_shows_no_names_or_mistyped_emails(
    airflow_db, constantcontact_sandbox, dags_folder, tmp_path
) -> None:
    sandbox = constantcontact_sandbox
    names = ["Jennifer", "Jennifer", "Bartholomew", "jane.doe@gmail,com"]
    source = write_parquet(
        tmp_path / "segment.parquet",
        {"email": [f"p{i}@example.com" for i in range(4)], "first_name": names},
    )
    dag_id = "cc_i18_native"

    result, output = run_export(
        sandbox,
        dags_folder,
        dag_id,
        source=str(source),
        list_ids=[sandbox.list_ids["Newsletter"]],
        segment_column="first_name",
        segments=["vip"],
    )

    summary = succeeded(result, dag_id)
    assert summary["rows_read"] == 0
    assert "No row of 'first_name' matches segments=['vip']" in output
    assert "3 distinct values over 4 rows" in output
    assert "'J*******': 2" in output
    for value in [*names, "Jennif", "Bartho", "jane.doe", "gmail,com"]:
        assert value not in output


# --------------------------------------------------------------------------------- 8. messages
def test_guard_and_unknown_list_id_messages_say_what_is_true(
    airflow_db, constantcontact_sandbox, dags_folder, tmp_path
) -> None:
    sandbox = constantcontact_sandbox
    target = sandbox.create_list("Mirrored")
    sandbox.add_list_members(target, ["keep1@example.com", "keep2@example.com", "gone@example.com"])
    # Both rows are rejected (phone too long): no valid contact, yet their contacts stay members.
    source = write_parquet(
        tmp_path / "segment.parquet",
        {"email": ["keep1@example.com", "keep2@example.com"], "phone": ["5" * 60, "6" * 60]},
    )
    dag_id = "cc_i18_text"

    result, output = run_export(
        sandbox,
        dags_folder,
        dag_id,
        source=str(source),
        list_ids=[target],
        mapping={"email": "email", "phone": "phone"},
        sync_mode="mirror",
        max_removal_ratio=1.0,
    )

    failed(result, dag_id)
    assert f"list {target}: 1 of its 3 members (33.3%)" in output
    assert "remove all" not in output
    assert "raise max_removal_ratio" not in output
    assert sandbox.list_member_emails(target) == {
        "keep1@example.com",
        "keep2@example.com",
        "gone@example.com",
    }

    result, output = run_export(sandbox, dags_folder, dag_id, source=str(source), list_ids="Newsletter")
    failed(result, dag_id)
    assert "Unknown Constant Contact list id(s): Newsletter" in output
    assert "'Newsletter' is not a list id" in output
    assert "put the name in list_names" in output


# ------------------------------------------------------------- 4. a kill during mirror removals
def test_a_kill_during_removals_loses_no_record_of_who_was_removed(
    airflow_db, constantcontact_sandbox, dags_folder, tmp_path
) -> None:
    sandbox = constantcontact_sandbox
    target = sandbox.create_list("Mirrored")
    staying = [f"stay{i}@example.com" for i in range(20)]
    leaving = [f"left{i:04d}@example.com" for i in range(5000)]
    leaving_ids = set(sandbox.add_list_members(target, leaving))
    sandbox.add_list_members(target, staying)
    source = write_parquet(tmp_path / "segment.parquet", {"email": staying})
    removals = tmp_path / "out" / "removals.parquet"
    journal = tmp_path / "out" / "removals.parquet.journal"
    dag_id = "cc_i18_text"
    conf = {
        "source": str(source),
        "list_ids": [target],
        "sync_mode": "mirror",
        "max_removal_ratio": 1.0,
        "removals_path": str(removals),
    }
    # Hold the third of the ten removal requests in flight, then kill the run.
    reached, release = threading.Event(), threading.Event()

    def hold() -> None:
        reached.set()
        release.wait(120)

    sandbox.before_next(hold, REMOVALS_PATH, method="POST", after=2)
    dags_test_killed_when(
        dag_id,
        conf,
        env={"AIRFLOW_CONN_CONSTANTCONTACT_DEFAULT": sandbox.connection_json()},
        dags_folder=dags_folder,
        log_file=tmp_path / "killed-run.log",
        reached=reached,
        release=release,
    )
    # The held request reaches the service after its client died: it is processed all the same.
    deadline = time.monotonic() + 30
    while sum(1 for e in sandbox.request_log if e.path == REMOVALS_PATH and e.status == 201) < 3:
        assert time.monotonic() < deadline, "the held removal request was never processed"
        time.sleep(0.1)
    removed_by_killed_run = {
        sandbox.contact_id(email) for email in set(leaving) - sandbox.list_member_emails(target)
    }
    assert len(removed_by_killed_run) == 1500

    # The killed run left its record where the user sees it: every membership it removed.
    assert not removals.exists()
    entries = sorted(journal.glob("*.parquet"))
    assert len(entries) == 3
    journaled = pa.concat_tables([pq.read_table(entry) for entry in entries])
    assert set(journaled["list_id"].to_pylist()) == {target}
    assert removed_by_killed_run <= set(journaled["contact_id"].to_pylist())

    result, output = run_export(sandbox, dags_folder, dag_id, **conf)

    summary = succeeded(result, dag_id)
    assert sandbox.list_member_emails(target) == set(staying)
    recorded = pq.read_table(removals)
    assert recorded.num_rows == 5000
    assert set(recorded["contact_id"].to_pylist()) == leaving_ids
    assert set(recorded["email"].to_pylist()) == set(leaving)
    assert recorded["requested_at"].null_count == 0
    assert summary["removed"] == {target: 3500}
    assert summary["removals_written"] == 5000
    assert summary["removals_recovered"] == 1500
    assert list(journal.glob("*.parquet")) == []
    for email in (*leaving[:50], *staying):
        assert email not in output
