"""The removals journal when a removal request fails for good: the record is kept, then merged once."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from airflow_provider_constantcontact.exceptions import ConstantContactError
from tests.operators.conftest import run, write_parquet

REMOVALS_PATH = "/v3/activities/remove_list_memberships"


def test_a_failed_removal_keeps_its_journal_and_the_rerun_records_each_membership_once(
    make_export, constantcontact_sandbox, tmp_path
) -> None:
    sandbox = constantcontact_sandbox
    target = sandbox.create_list("Mirrored")
    leaving = [f"left{i:04d}@example.com" for i in range(1500)]
    leaving_ids = set(sandbox.add_list_members(target, leaving))
    sandbox.add_list_members(target, ["stay@example.com"])
    source = write_parquet(tmp_path / "s.parquet", {"Email": ["stay@example.com"]})
    removals = tmp_path / "out" / "removals.parquet"
    journal = tmp_path / "out" / "removals.parquet.journal"
    options = {
        "source": str(source),
        "list_ids": [target],
        "field_mapping": {"email": "Email"},
        "sync_mode": "mirror",
        "max_removal_ratio": 1.0,
        "removals_path": str(removals),
    }
    # The second removal request fails on each of the hook's 6 attempts: journaled, never processed.
    sandbox.fail_next(count=6, status=500, path_prefix=REMOVALS_PATH, after=1)
    with pytest.raises(ConstantContactError):
        run(make_export(**options))
    assert not removals.exists()
    entries = sorted(journal.glob("*.parquet"))
    assert [pq.read_table(entry).num_rows for entry in entries] == [500, 500]
    assert len(sandbox.list_member_emails(target)) == 1001  # only the first request was processed

    summary, _ = run(make_export(**options))

    recorded = pq.read_table(removals)
    assert recorded.num_rows == 1500
    assert set(recorded["contact_id"].to_pylist()) == leaving_ids
    assert summary["removed"] == {target: 1000}
    assert summary["removals_written"] == 1500
    assert summary["removals_recovered"] == 500
    assert list(journal.glob("*.parquet")) == []
    assert sandbox.list_member_emails(target) == {"stay@example.com"}
