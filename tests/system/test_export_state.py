"""Export state through the user's path: `airflow dags test` with a conf, the sandbox over HTTP.

A contact who leaves a list by themselves is never put back (upsert, mirror, full refresh,
the deferrable wait); a contact the mirror removed comes back when it rejoins the segment; a
quiet day costs a handful of requests; a state written for other lists is refused.
"""

from __future__ import annotations

import json
import threading
from textwrap import dedent
from typing import NamedTuple

import pyarrow.parquet as pq
import pytest

from tests.operators.conftest import write_parquet
from tests.operators.test_constantcontact import memory_storage  # noqa: F401 (the memory:// store)
from tests.system.dag_runs import airflow_dags_test, dags_test_killed_when, describe, latest_run, load_demo

DAG_FILE = dedent(
    '''
    """Probe DAGs: the export with state, every parameter from the run's conf."""
    import pendulum
    from airflow.sdk import dag

    from airflow_provider_constantcontact.operators.constantcontact import (
        ConstantContactSegmentExportOperator,
    )


    def state_probe(dag_id, native, deferrable):
        @dag(
            dag_id=dag_id,
            schedule=None,
            start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
            catchup=False,
            render_template_as_native_obj=native,
            params={"source": "", "list_id": "", "state_path": "", "rejects_path": "",
                    "sync_mode": "upsert", "full_refresh": False},
        )
        def probe():
            ConstantContactSegmentExportOperator(
                task_id="export",
                source="{{ params.source }}",
                list_ids="{{ params.list_id }}",
                field_mapping={"email": "Email", "first_name": "First"},
                sync_mode="{{ params.sync_mode }}",
                max_removal_ratio=1.0,
                state_path="{{ params.state_path }}",
                rejects_path="{{ params.rejects_path }}",
                full_refresh="{{ params.full_refresh }}",
                wait_for_completion=True,
                deferrable=deferrable,
                poll_interval=0.2,
            )

        probe()


    state_probe("cc_state_native", True, False)
    state_probe("cc_state_text_deferrable", False, True)
    '''
)


@pytest.fixture
def dags_folder(tmp_path):
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "cc_state_probes.py").write_text(DAG_FILE)
    return dags


def _segment(tmp_path, people: dict[str, str]) -> str:
    return str(
        write_parquet(
            tmp_path / "data" / "segment.parquet", {"Email": list(people), "First": list(people.values())}
        )
    )


def _run(sandbox, dags_folder, dag_id: str, conf: dict) -> tuple[object, dict]:
    result = airflow_dags_test(
        dag_id,
        env={"AIRFLOW_CONN_CONSTANTCONTACT_DEFAULT": sandbox.connection_json()},
        conf=json.dumps(conf),
        dags_folder=dags_folder,
        timeout=300,
    )
    run_id, state = latest_run(dag_id)
    summary = load_demo().read_xcom(dag_id, "export", run_id=run_id) if state == "success" else {}
    return result, summary


def test_leaver_never_readded_mirror_rejoin_and_quiet_day(
    airflow_db, constantcontact_sandbox, dags_folder, tmp_path
):
    sandbox = constantcontact_sandbox
    list_id = sandbox.create_list("VIP state")
    state_path = str(tmp_path / "state" / "vip.parquet")
    rejects_path = str(tmp_path / "out" / "rejects.parquet")
    base = {"list_id": list_id, "state_path": state_path, "rejects_path": rejects_path}
    everyone = {"ann@example.com": "Ann", "bob@example.com": "Bob", "cat@example.com": "Cat"}

    # Day 1: first run, everyone imported, the state written.
    result, summary = _run(
        sandbox, dags_folder, "cc_state_native", {**base, "source": _segment(tmp_path, everyone)}
    )
    assert result.returncode == 0, describe(result)
    assert summary["contacts_to_add"] == 3
    assert sandbox.list_member_emails(list_id) == set(everyone)

    # Bob leaves the list by himself; Ann's first name changes; Dan joins the segment.
    sandbox.leave_list(list_id, ["bob@example.com"])
    day2 = {**everyone, "ann@example.com": "Anna", "dan@example.com": "Dan"}
    result, summary = _run(
        sandbox, dags_folder, "cc_state_native", {**base, "source": _segment(tmp_path, day2)}
    )
    assert result.returncode == 0, describe(result)
    assert sandbox.list_member_emails(list_id) == {"ann@example.com", "cat@example.com", "dan@example.com"}
    assert sandbox.list_members(list_id)["ann@example.com"]["first_name"] == "Anna"
    assert summary["contacts_submitted"] == 2  # Anna (changed) and Dan (new); Cat unchanged
    assert summary["contacts_unchanged"] == 1
    assert summary["left_list_outside_export"] == 1
    assert summary["changes_read"] == {list_id: "incremental"}
    rejects = pq.read_table(rejects_path).to_pylist()
    assert rejects == [{"Email": "bob@example.com", "First": "Bob", "reason": "left_list"}]
    output = result.stdout + result.stderr
    assert "bob@example.com" not in output

    # Full refresh in mirror mode, rendered as text and deferred: Cat leaves the segment and
    # is removed; Bob is still kept out; everyone else is re-sent.
    day3 = {k: v for k, v in day2.items() if k != "cat@example.com"}
    conf = {**base, "source": _segment(tmp_path, day3), "sync_mode": "mirror", "full_refresh": True}
    result, summary = _run(sandbox, dags_folder, "cc_state_text_deferrable", conf)
    assert result.returncode == 0, describe(result)
    assert sandbox.list_member_emails(list_id) == {"ann@example.com", "dan@example.com"}
    assert summary["changes_read"] == {list_id: "full"}
    assert summary["removed"] == {list_id: 1}
    assert summary["left_list_outside_export"] == 1

    # Cat rejoins the segment: the mirror removed her, so she comes back; Bob does not.
    conf = {**base, "source": _segment(tmp_path, day2), "sync_mode": "mirror"}
    result, summary = _run(sandbox, dags_folder, "cc_state_native", conf)
    assert result.returncode == 0, describe(result)
    assert sandbox.list_member_emails(list_id) == {"ann@example.com", "cat@example.com", "dan@example.com"}
    assert summary["contacts_submitted"] == 1

    # A quiet day: nothing changed, nothing sent, a handful of API requests.
    sandbox.clear_request_log()
    result, summary = _run(sandbox, dags_folder, "cc_state_native", conf)
    assert result.returncode == 0, describe(result)
    api_requests = [entry for entry in sandbox.request_log if entry.path.startswith("/v3/")]
    assert summary["contacts_submitted"] == 0
    assert summary["contacts_unchanged"] == 3
    assert len(api_requests) < 20, [entry.path for entry in api_requests]
    assert not any("import" in entry.path or "remove" in entry.path for entry in api_requests)


def test_state_of_another_task_is_refused(airflow_db, constantcontact_sandbox, dags_folder, tmp_path):
    sandbox = constantcontact_sandbox
    first, second = sandbox.create_list("State A"), sandbox.create_list("State B")
    state_path = str(tmp_path / "state" / "shared.parquet")
    source = _segment(tmp_path, {"ann@example.com": "Ann"})
    result, _ = _run(
        sandbox,
        dags_folder,
        "cc_state_native",
        {"source": source, "list_id": first, "state_path": state_path},
    )
    assert result.returncode == 0, describe(result)

    result, _ = _run(
        sandbox,
        dags_folder,
        "cc_state_native",
        {"source": source, "list_id": second, "state_path": state_path},
    )

    assert latest_run("cc_state_native")[1] == "failed"
    output = result.stdout + result.stderr
    assert "belongs to another task" in output
    assert sandbox.list_member_emails(second) == set()


def _state_rows(path: str) -> dict[str, int]:
    rows = pq.read_table(path).to_pylist()
    return {row["email"]: row["status"] for row in rows}


def test_killed_run_then_rerun_loses_nothing_and_readds_no_leaver(
    airflow_db, constantcontact_sandbox, dags_folder, tmp_path
):
    """A mirror run fails after its import and halfway through its removals (the second removal
    request is refused): the previous state stays as it was, and the reruns finish the job,
    keep the leaver out, and let the contacts the failed run removed come back."""
    sandbox = constantcontact_sandbox
    mirrored = _mirrored_with_a_leaver(sandbox, dags_folder, tmp_path)
    list_id, base, state_path, shrunk = mirrored.list_id, mirrored.base, mirrored.state_path, mirrored.shrunk
    sandbox.fail_next(1, status=400, path_prefix="/v3/activities/remove_list_memberships", after=1)
    result, _ = _run(sandbox, dags_folder, "cc_state_native", {**base, "source": _segment(tmp_path, shrunk)})

    assert latest_run("cc_state_native")[1] == "failed", describe(result)
    assert pq.read_table(state_path).equals(mirrored.before)  # the previous state, untouched
    members = sandbox.list_member_emails(list_id)
    assert "new@example.com" in members  # imported before the failure
    assert len(members) == 1100 + 1 - 500  # 1,100 + new, minus the first 500 removed (bob had left)

    rerun = _rerun_then_everyone_rejoins(sandbox, dags_folder, tmp_path, mirrored)
    assert rerun["removed"] == {list_id: 500}


class _Mirrored(NamedTuple):
    """A list mirrored with state from 1,100 contacts and bob; bob then left the list himself."""

    list_id: str
    base: dict
    state_path: str
    crowd: dict[str, str]
    few: dict[str, str]
    #: The next segment: the first 100 of the crowd, bob and a new contact.
    shrunk: dict[str, str]
    #: The state file after the first run.
    before: object


def _mirrored_with_a_leaver(sandbox, dags_folder, tmp_path) -> _Mirrored:
    list_id = sandbox.create_list("Killed")
    state_path = str(tmp_path / "state" / "killed.parquet")
    crowd = {f"p{n:04d}@example.com": f"P{n}" for n in range(1100)}
    base = {"list_id": list_id, "state_path": state_path, "sync_mode": "mirror"}
    result, _ = _run(
        sandbox,
        dags_folder,
        "cc_state_native",
        {**base, "source": _segment(tmp_path, {**crowd, "bob@example.com": "Bob"})},
    )
    assert result.returncode == 0, describe(result)
    before = pq.read_table(state_path)
    sandbox.leave_list(list_id, ["bob@example.com"])
    few = dict(list(crowd.items())[:100])
    shrunk = {**few, "bob@example.com": "Bob", "new@example.com": "New"}
    return _Mirrored(list_id, base, state_path, crowd, few, shrunk, before)


def _rerun_then_everyone_rejoins(sandbox, dags_folder, tmp_path, mirrored: _Mirrored) -> dict:
    """After a failed or killed run: the rerun converges to the shrunk segment and keeps bob out;
    then everyone rejoins the segment and all the export removed come back, bob does not. The
    rerun's summary."""
    list_id, base = mirrored.list_id, mirrored.base
    result, rerun = _run(
        sandbox, dags_folder, "cc_state_native", {**base, "source": _segment(tmp_path, mirrored.shrunk)}
    )
    assert result.returncode == 0, describe(result)
    assert sandbox.list_member_emails(list_id) == set(mirrored.few) | {"new@example.com"}
    assert rerun["left_list_outside_export"] == 1

    everyone = {**mirrored.crowd, "bob@example.com": "Bob", "new@example.com": "New"}
    result, summary = _run(
        sandbox, dags_folder, "cc_state_native", {**base, "source": _segment(tmp_path, everyone)}
    )
    assert result.returncode == 0, describe(result)
    assert sandbox.list_member_emails(list_id) == set(mirrored.crowd) | {"new@example.com"}
    assert summary["left_list_outside_export"] == 1
    assert _state_rows(mirrored.state_path)["bob@example.com"] == 2  # left
    return rerun


def test_safe_when_membership_changes_do_not_move_updated_at(
    airflow_db, constantcontact_sandbox_factory, dags_folder, tmp_path
):
    """The undocumented reading where leaving a list does not move updated_at: whether the change
    query or the membership count (then a full listing) finds the leaver, he is not re-added,
    even though his data changed and would otherwise be sent."""
    sandbox = constantcontact_sandbox_factory(
        rate_limit=0, token_rate_limit=0, processing_rate=None, membership_changes_move_updated_at=False
    )
    list_id = sandbox.create_list("Quiet leavers")
    base = {"list_id": list_id, "state_path": str(tmp_path / "state" / "q.parquet")}
    people = {"ann@example.com": "Ann", "bob@example.com": "Bob", "cat@example.com": "Cat"}
    for _ in range(2):  # the second run learns the watermark and counts from a confirmed state
        result, _ = _run(
            sandbox, dags_folder, "cc_state_native", {**base, "source": _segment(tmp_path, people)}
        )
        assert result.returncode == 0, describe(result)
    sandbox.advance_time(2 * 3600)  # past the hour of changes each check reads again
    sandbox.leave_list(list_id, ["bob@example.com"])

    changed = {**people, "bob@example.com": "Robert"}  # bob's data changes: he would be re-sent
    result, summary = _run(
        sandbox, dags_folder, "cc_state_native", {**base, "source": _segment(tmp_path, changed)}
    )

    assert result.returncode == 0, describe(result)
    assert summary["left_list_outside_export"] == 1
    assert sandbox.list_member_emails(list_id) == {"ann@example.com", "cat@example.com"}


def test_state_on_a_file_url(airflow_db, constantcontact_sandbox, dags_folder, tmp_path):
    """A ``file://`` state_path through `airflow dags test`: the second run sends nothing."""
    sandbox = constantcontact_sandbox
    list_id = sandbox.create_list("File URL")
    state_url = (tmp_path / "state" / "file-url.parquet").as_uri()
    conf = {
        "list_id": list_id,
        "state_path": state_url,
        "source": _segment(tmp_path, {"ann@example.com": "Ann"}),
    }
    for expected_sent in (1, 0):
        result, summary = _run(sandbox, dags_folder, "cc_state_native", conf)
        assert result.returncode == 0, describe(result)
        assert summary["contacts_submitted"] == expected_sent
    assert (tmp_path / "state" / "file-url.parquet").exists()
    assert not (tmp_path / "state" / ".file-url.parquet.journal").exists()  # committed and cleaned up


class _TaskInstance:
    def xcom_push(self, key: str, value: object) -> None:
        pass


def test_state_on_fsspec_memory(constantcontact_sandbox, default_conn_sandbox, memory_storage, tmp_path):  # noqa: F811
    """An fsspec ``memory://`` state_path (object storage in this process), over HTTP to the sandbox:
    the state is written there, and the next run keeps the leaver out and sends nothing else."""
    from fsspec.implementations.memory import MemoryFileSystem

    from airflow_provider_constantcontact.operators.constantcontact import (
        ConstantContactSegmentExportOperator,
    )

    sandbox = constantcontact_sandbox
    list_id = sandbox.create_list("Memory")
    state_url = "memory://crm/constantcontact-state/memory.parquet"
    source = _segment(tmp_path, {"ann@example.com": "Ann", "bob@example.com": "Bob"})

    def export() -> dict:
        operator = ConstantContactSegmentExportOperator(
            task_id="memory_state",
            source=source,
            list_ids=list_id,
            field_mapping={"email": "Email", "first_name": "First"},
            state_path=state_url,
            poll_interval=0.2,
        )
        return dict(operator.execute({"ti": _TaskInstance()}))  # type: ignore[arg-type]

    assert export()["contacts_submitted"] == 2
    stored = set(MemoryFileSystem.store)
    assert "/crm/constantcontact-state/memory.parquet" in stored
    assert not any(path.endswith(".journal") for path in stored)  # committed and cleaned up
    sandbox.leave_list(list_id, ["bob@example.com"])
    summary = export()
    assert summary["contacts_submitted"] == 0
    assert summary["left_list_outside_export"] == 1
    assert sandbox.list_member_emails(list_id) == {"ann@example.com"}


def test_two_lists_one_body_and_a_leaver_of_one_list_still_goes_to_the_other(
    constantcontact_sandbox, default_conn_sandbox, tmp_path
):
    """A contact who left list A but not list B: its changed data goes to B only, in one request
    whose body names B; contacts of both lists share a body naming both."""
    from airflow_provider_constantcontact.operators.constantcontact import (
        ConstantContactSegmentExportOperator,
    )

    sandbox = constantcontact_sandbox
    first, second = sandbox.create_list("Two A"), sandbox.create_list("Two B")
    state_path = str(tmp_path / "state" / "two.parquet")

    def export(people: dict[str, str]) -> dict:
        operator = ConstantContactSegmentExportOperator(
            task_id="two_lists",
            source=_segment(tmp_path, people),
            list_ids=[first, second],
            field_mapping={"email": "Email", "first_name": "First"},
            state_path=state_path,
            poll_interval=0.2,
        )
        return dict(operator.execute({"ti": _TaskInstance()}))  # type: ignore[arg-type]

    people = {"ann@example.com": "Ann", "bob@example.com": "Bob"}
    assert export(people)["batches"] == 1  # one body for both lists
    sandbox.leave_list(first, ["bob@example.com"])
    sandbox.clear_request_log()
    summary = export({"ann@example.com": "Anna", "bob@example.com": "Robert"})

    assert summary["left_list_outside_export"] == 1
    assert summary["batches"] == 2  # ann to both lists, bob to B only
    assert sandbox.list_member_emails(first) == {"ann@example.com"}
    assert sandbox.list_member_emails(second) == {"ann@example.com", "bob@example.com"}
    assert sandbox.list_members(second)["bob@example.com"]["first_name"] == "Robert"
    imports = [entry for entry in sandbox.request_log if entry.path.endswith("contacts_json_import")]
    assert len(imports) == 2


IMPORT_PATH = "/v3/activities/contacts_json_import"
REMOVALS_PATH = "/v3/activities/remove_list_memberships"


def _killed_run(sandbox, dags_folder, tmp_path, conf: dict, *, path_prefix: str, method: str) -> None:
    """`airflow dags test` of the native probe with ``conf``, SIGKILLed (the whole process group)
    while a ``method`` request under ``path_prefix`` sent after the run's import is held in flight."""
    reached, release, armed = threading.Event(), threading.Event(), threading.Event()
    armed.set()

    def hold() -> None:
        if armed.is_set() and any(entry.path == IMPORT_PATH for entry in sandbox.request_log):
            reached.set()
            release.wait(120)

    sandbox.clear_request_log()
    sandbox.before_next(hold, path_prefix, method=method, count=1000)
    try:
        dags_test_killed_when(
            "cc_state_native",
            conf,
            env={"AIRFLOW_CONN_CONSTANTCONTACT_DEFAULT": sandbox.connection_json()},
            dags_folder=dags_folder,
            log_file=tmp_path / "killed-run.log",
            reached=reached,
            release=release,
        )
    finally:
        armed.clear()  # later requests (the rerun's) go through


@pytest.mark.parametrize(
    ("kill_point", "path_prefix", "method"),
    [
        ("during the removals", REMOVALS_PATH, "POST"),  # the second of two removal requests
        ("between the import and the state write", "/v3/activities", "GET"),  # the wait's poll
    ],
)
def test_sigkilled_run_then_rerun_loses_nothing_and_readds_no_leaver(
    airflow_db, constantcontact_sandbox, dags_folder, tmp_path, kill_point, path_prefix, method
):
    """SIGKILL of the process running a mirror export with state, after its import, then a rerun:
    the previous state is untouched by the killed run, the rerun converges, the contact who left
    the list stays out, and the contacts the export removed come back when they rejoin."""
    sandbox = constantcontact_sandbox
    mirrored = _mirrored_with_a_leaver(sandbox, dags_folder, tmp_path)
    list_id = mirrored.list_id

    _killed_run(
        sandbox,
        dags_folder,
        tmp_path,
        {**mirrored.base, "source": _segment(tmp_path, mirrored.shrunk)},
        path_prefix=path_prefix,
        method=method,
    )

    assert pq.read_table(mirrored.state_path).equals(mirrored.before), kill_point  # untouched
    assert "new@example.com" in sandbox.list_member_emails(list_id)  # the import happened
    assert "bob@example.com" not in sandbox.list_member_emails(list_id)

    _rerun_then_everyone_rejoins(sandbox, dags_folder, tmp_path, mirrored)
