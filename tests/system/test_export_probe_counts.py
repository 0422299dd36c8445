"""Issue 18 §1: a completed export never fails on what the API's counters may mean.

Against a sandbox whose JSON imports count a CSV headings row in ``items_total_count`` (one item
more than contacts), the waited export, the deferrable export and mirror mode all succeed,
through ``airflow dags test`` with a conf; on the old code each failed after its contacts were
imported ("-1 contacts were dropped").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.operators.conftest import write_parquet
from tests.system.dag_runs import describe
from tests.system.probe_runs import run_probe


@pytest.fixture
def headings_sandbox(constantcontact_sandbox_factory: Any) -> Any:
    """A sandbox (limits off) whose imports report one item more than contacts: a headings row."""
    return constantcontact_sandbox_factory(
        rate_limit=0, token_rate_limit=0, import_items_include_headings_row=True, lists=["Newsletter"]
    )


@pytest.mark.parametrize("dag_id", ["cc_probe_native_waited", "cc_probe_text_deferred"])
def test_waited_and_deferred_exports_pass_when_items_count_a_headings_row(
    airflow_db: Path, headings_sandbox: Any, tmp_path: Path, dag_id: str
) -> None:
    source = write_parquet(
        tmp_path / "segment.parquet", {"Email": [f"c{n}@example.com" for n in range(7)] + ["bad"]}
    )
    list_id = headings_sandbox.list_ids["Newsletter"]

    result, state, summary = run_probe(
        dag_id, headings_sandbox, {"source": str(source), "list_ids": [list_id]}
    )

    assert state == "success", describe(result)
    assert summary is not None
    assert summary["waited"] is True
    assert summary["contacts_submitted"] == 7
    assert summary["items_total_count"] == 8  # the headings row
    assert summary["person_count"] == 7
    assert list(summary["contacts_by_activity"].values()) == [7]
    assert len(headings_sandbox.list_member_emails(list_id)) == 7


def test_mirror_mode_passes_when_items_count_a_headings_row(
    airflow_db: Path, headings_sandbox: Any, tmp_path: Path
) -> None:
    list_id = headings_sandbox.list_ids["Newsletter"]
    headings_sandbox.add_list_members(list_id, ["c0@example.com", "left@example.com"])
    source = write_parquet(tmp_path / "segment.parquet", {"Email": [f"c{n}@example.com" for n in range(4)]})
    removals = tmp_path / "out" / "removals.parquet"

    result, state, summary = run_probe(
        "cc_probe_native_waited",
        headings_sandbox,
        {
            "source": str(source),
            "list_ids": [list_id],
            "sync_mode": "mirror",
            "removals_path": str(removals),
        },
    )

    assert state == "success", describe(result)
    assert summary is not None
    assert summary["removed"] == {list_id: 1}
    assert summary["contacts_submitted"] == 4
    assert headings_sandbox.list_member_emails(list_id) == {f"c{n}@example.com" for n in range(4)}
    assert "left@example.com" not in result.stdout + result.stderr
