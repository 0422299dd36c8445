"""Issue 18 §3: every check that can fail without touching Constant Contact runs before the first
change, in the real run and with plan_only alike (``airflow dags test`` with a conf, sandbox over HTTP).

On the code before the fix each of these changed the account (a member removed, a list created)
and then failed, or the plan-only run passed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.operators.conftest import write_parquet
from tests.system.dag_runs import describe
from tests.system.probe_runs import changes_made, output_of, run_probe


def test_an_unwritable_removals_path_fails_before_any_member_is_removed(
    airflow_db: Path, constantcontact_sandbox: Any, tmp_path: Path
) -> None:
    source = write_parquet(tmp_path / "segment.parquet", {"Email": ["stay@example.com"]})
    list_id = constantcontact_sandbox.list_ids["Newsletter"]
    constantcontact_sandbox.add_list_members(list_id, ["stay@example.com", "left@example.com"])
    (tmp_path / "taken").write_text("a file where a folder is needed")
    removals = tmp_path / "taken" / "removals.parquet"

    result, state, _ = run_probe(
        "cc_probe_native_waited",
        constantcontact_sandbox,
        {"source": str(source), "list_ids": [list_id], "sync_mode": "mirror", "removals_path": str(removals)},
    )

    assert state == "failed", describe(result)
    assert f"removals_path {removals} cannot be written" in output_of(result)
    assert changes_made(constantcontact_sandbox) == []
    assert constantcontact_sandbox.list_member_emails(list_id) == {"stay@example.com", "left@example.com"}


@pytest.mark.parametrize("problem", ["unwritable rejects_path", "a mapped column named reason"])
def test_a_rejects_problem_fails_before_a_missing_list_is_created(
    airflow_db: Path, constantcontact_sandbox: Any, tmp_path: Path, problem: str
) -> None:
    source = write_parquet(
        tmp_path / "segment.parquet", {"Email": ["a@example.com", "bad"], "reason": ["x", "y"]}
    )
    (tmp_path / "taken").write_text("a file where a folder is needed")
    conf = {
        "source": str(source),
        "list_names": ["Brand new"],
        "create_missing_lists": True,
        "field_mapping": {"email": "Email"},
        "rejects_path": str(tmp_path / "taken" / "rejects.parquet"),
    }
    expected = "rejects_path .* cannot be written"
    if problem == "a mapped column named reason":
        conf.update(
            field_mapping={"email": "Email", "job_title": "reason"}, rejects_path=str(tmp_path / "r.parquet")
        )
        expected = "A mapped column is named 'reason'"

    result, state, _ = run_probe("cc_probe_text_waited", constantcontact_sandbox, conf)

    assert state == "failed", describe(result)
    assert re.search(expected, output_of(result)), describe(result)
    assert changes_made(constantcontact_sandbox) == []
    assert "Brand new" not in constantcontact_sandbox.list_ids


@pytest.mark.parametrize("plan_only", [False, True])
def test_a_list_name_over_the_limit_fails_before_any_list_is_created_and_when_planning_only(
    airflow_db: Path, constantcontact_sandbox: Any, tmp_path: Path, plan_only: bool
) -> None:
    source = write_parquet(tmp_path / "segment.parquet", {"Email": ["a@example.com"]})
    long_name = "L" * 300

    result, state, _ = run_probe(
        "cc_probe_native_waited",
        constantcontact_sandbox,
        {
            "source": str(source),
            "list_names": ["Valid new", long_name],
            "create_missing_lists": True,
            "plan_only": plan_only,
        },
    )

    assert state == "failed", describe(result)
    assert f"the name starting {'L' * 40!r} has 300 characters, more than the 255" in output_of(result)
    assert "no list was created" in output_of(result)
    assert changes_made(constantcontact_sandbox) == []
    assert set(constantcontact_sandbox.list_ids) == {"Newsletter"}
