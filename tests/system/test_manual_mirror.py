"""The manual example DAG's form in mirror mode: `airflow dags test` with a conf against the sandbox."""

from __future__ import annotations

import json

from tests.system.dag_runs import airflow_dags_test, describe, latest_run, load_demo, task_states

MANUAL = "constantcontact_manual_export"

demo = load_demo()


def test_form_offers_lists_by_name_sync_mode_and_data_matching() -> None:
    from tests.airflow_compat import DagBag
    from tests.system.dag_runs import EXAMPLE_DAGS

    params = DagBag(dag_folder=str(EXAMPLE_DAGS)).dags[MANUAL].params
    expected = {
        "list_names": "array",
        "create_missing_lists": "boolean",
        "email_column": "string",
        "first_name_column": ["null", "string"],
        "last_name_column": ["null", "string"],
        "other_fields": "object",
        "sync_mode": "string",
        "max_removal_ratio": "number",
        "state_path": ["null", "string"],
        "full_refresh": "boolean",
    }
    for name, json_type in expected.items():
        param = params.get_param(name)
        assert param.schema["type"] == json_type, name
        assert param.schema.get("title"), name
        assert param.description, name
    assert params.get_param("sync_mode").schema["enum"] == ["upsert", "mirror"]
    assert params["sync_mode"] == "upsert"
    assert params["max_removal_ratio"] == 0.1
    assert params["full_refresh"] is False


def test_manual_dag_mirrors_a_list_chosen_by_name(airflow_db, constantcontact_sandbox, tmp_path) -> None:
    source = tmp_path / "segment" / "customers.parquet"
    expected = demo.generate_segment(source, rows=300, seed=5)
    vip = expected["vip"]
    list_id = constantcontact_sandbox.create_list("Form VIP")
    stay = sorted(vip)[:5]
    constantcontact_sandbox.add_list_members(list_id, [*stay, "left@example.com", "hand@example.com"])
    conf = {
        "source": str(source),
        "list_names": ["Form VIP"],
        "segment_column": "segment",
        "segments": ["vip"],
        "email_column": "email",
        "first_name_column": None,  # left empty in the form: first names are not exported
        "sync_mode": "mirror",
        "max_removal_ratio": 0.5,
    }

    result = airflow_dags_test(
        MANUAL,
        env={"AIRFLOW_CONN_CONSTANTCONTACT_DEFAULT": constantcontact_sandbox.connection_json()},
        conf=json.dumps(conf),
    )

    assert result.returncode == 0, describe(result)
    run_id, state = latest_run(MANUAL)
    assert state == "success"
    assert task_states(MANUAL, run_id)["wait_for_import"] == "success"
    assert constantcontact_sandbox.list_member_emails(list_id) == set(vip)
    members = constantcontact_sandbox.list_members(list_id)
    new = sorted(set(vip) - set(stay))[0]
    assert "first_name" not in members[new]
    assert members[new].get("last_name") == vip[new].get("last_name")
    summary = demo.read_xcom(MANUAL, "export_segment", run_id=run_id)
    assert summary["removed"] == {list_id: 2}
    assert summary["members_before"] == {list_id: 7}
    assert summary["list_ids"] == [list_id]
    output = result.stdout + result.stderr
    for email in ("left@example.com", "hand@example.com", *stay):
        assert email not in output
