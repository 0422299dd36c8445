"""Unit tests of the export state's small pieces: reconciling what was read, the trust check."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_constantcontact.exceptions import ExportStateError
from airflow_provider_constantcontact.export.changes import check_changes
from airflow_provider_constantcontact.export.reconcile import reconcile
from airflow_provider_constantcontact.export.state import (
    LEFT,
    MEMBER,
    SENT,
    UNSUBSCRIBED,
    ExportState,
    StateIdentity,
    StateMeta,
    fingerprints,
    read_state,
    state_table,
    write_state,
)

LIST = "11111111-1111-1111-1111-111111111111"
IDENTITY = StateIdentity((LIST,), "mapping", "https://api.example/v3 client abc")
LOG = logging.getLogger(__name__)


def _rows(**statuses: int) -> pa.Table:
    emails = [f"{name}@example.com" for name in statuses]
    return pa.table(
        {
            "email": pa.array(emails, pa.string()),
            "fingerprint": pa.array([1] * len(emails), pa.int64()),
            "status": pa.array(list(statuses.values()), pa.int8()),
            "contact_id": pa.array([f"id-{name}" for name in statuses], pa.string()),
        }
    )


def _seen(members: dict[str, bool], unsubscribed: tuple[str, ...] = ()) -> pa.Table:
    return pa.table(
        {
            "email": pa.array([f"{name}@example.com" for name in members], pa.string()),
            "m_contact_id": pa.array([f"id-{name}" for name in members], pa.string()),
            "m_member": pa.array(list(members.values()), pa.bool_()),
            "m_unsub": pa.array([name in unsubscribed for name in members], pa.bool_()),
        }
    )


def _statuses(table: pa.Table) -> dict[str, int]:
    return {row["email"].split("@")[0]: row["status"] for row in table.to_pylist()}


def test_reconcile_changes_finds_leavers_rejoiners_and_export_removals() -> None:
    rows = _rows(ann=MEMBER, bob=MEMBER, cat=LEFT, dan=MEMBER, eve=SENT, fay=MEMBER)
    seen = _seen({"bob": False, "cat": True, "dan": False, "eve": False, "fay": True, "gus": True}, ("fay",))
    journal = pa.array(["dan@example.com"], pa.string())

    result, counts = reconcile(rows, seen, journal, complete=False)

    # ann unseen: unchanged; bob left; cat came back; dan removed by the export: dropped; eve
    # unconfirmed stays to be re-sent; fay unsubscribed; gus joined outside the export.
    assert _statuses(result) == {
        "ann": MEMBER,
        "bob": LEFT,
        "cat": MEMBER,
        "eve": SENT,
        "fay": UNSUBSCRIBED,
        "gus": MEMBER,
    }
    assert counts["left"] == 1
    assert counts["removed_by_export"] == 1
    assert counts["unsubscribed"] == 1
    assert counts["joined"] == 2


def test_reconcile_changes_learns_contact_ids_and_keeps_unseen_rows_as_they_were() -> None:
    rows = _rows(ann=MEMBER, bob=MEMBER, eve=SENT)
    rows = rows.set_column(3, "contact_id", pa.array(["id-ann", "id-bob", None], pa.string()))
    seen = _seen({"eve": True})

    result, counts = reconcile(rows, seen, pa.array([], pa.string()), complete=False)

    assert {row["email"]: row["contact_id"] for row in result.to_pylist()} == {
        "ann@example.com": "id-ann",
        "bob@example.com": "id-bob",
        "eve@example.com": "id-eve",
    }
    assert _statuses(result) == {"ann": MEMBER, "bob": MEMBER, "eve": SENT}
    assert counts["joined"] == 0


def test_reconcile_full_listing_takes_absence_as_leaving() -> None:
    rows = _rows(ann=MEMBER, bob=MEMBER, cat=UNSUBSCRIBED)
    result, counts = reconcile(rows, _seen({"ann": True}), pa.array([], pa.string()), complete=True)
    assert _statuses(result) == {"ann": MEMBER, "bob": LEFT, "cat": UNSUBSCRIBED}
    assert counts["left"] == 1


class _CountingHook:
    """Answers the cheap check's three reads: a membership count and no changed contact."""

    def __init__(self, count: int, members: list[str]) -> None:
        self.count = count
        self.members = members
        self.full_listings = 0

    def iter_contact_lists(self, *, include_membership_count: bool = False):
        return iter([{"list_id": LIST, "membership_count": self.count}])

    def iter_contact_pages(self, list_id=None, **filters):
        if list_id is None:
            return iter([[]])
        self.full_listings += 1
        return iter([[{"contact_id": f"id-{m}", "email_address": {"address": m}} for m in self.members]])


def _state(members: int) -> ExportState:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    meta = StateMeta(IDENTITY, watermark=now, members_expected={LIST: [members, members]}, written_at=now)
    return ExportState(state_table(LIST, _rows(ann=MEMBER, bob=MEMBER)), meta)


@pytest.mark.parametrize(("count", "mode"), [(2, "incremental"), (1, "full")])
def test_count_that_disagrees_falls_back_to_a_full_listing(count: int, mode: str, tmp_path) -> None:
    hook = _CountingHook(count, ["ann@example.com"])
    check = check_changes(
        hook,  # type: ignore[arg-type]
        _state(2),
        [LIST],
        full_refresh=False,
        mirror_hashes=None,
        journal=pa.table({"list_id": pa.array([], pa.string()), "email": pa.array([], pa.string())}),
        log=LOG,
    )
    assert check.lists[LIST].mode == mode
    assert hook.full_listings == (mode == "full")
    expected = {"ann": MEMBER, "bob": LEFT if mode == "full" else MEMBER}
    assert _statuses(check.state.for_list(LIST)) == expected
    # A full listing's contact ids wait in a local spill until the state is written; then it goes.
    spill = check.spill_directory
    assert (spill is not None) == (mode == "full")
    written = tmp_path / "state.parquet"
    write_state(str(written), check.state, None)
    ids = {row["email"]: row["contact_id"] for row in pq.read_table(written).to_pylist()}
    assert ids["ann@example.com"] == ("id-ann@example.com" if mode == "full" else "id-ann")
    check.remove_spills()
    assert spill is None or not os.path.exists(spill)


class _FailingListingHook(_CountingHook):
    """A full listing that fails after its first page (a server error, a revoked token)."""

    def iter_contact_pages(self, list_id=None, **filters):
        if list_id is None:
            return iter([[]])

        def pages():
            yield [{"contact_id": "id-ann", "email_address": {"address": "ann@example.com"}}]
            raise ConnectionError("the listing failed")

        return pages()


def test_a_failed_full_listing_leaves_no_spilled_contact_ids(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(ConnectionError):
        check_changes(
            _FailingListingHook(1, []),  # type: ignore[arg-type]
            _state(2),
            [LIST],
            full_refresh=True,
            mirror_hashes=None,
            journal=pa.table({"list_id": pa.array([], pa.string()), "email": pa.array([], pa.string())}),
            log=LOG,
        )
    assert list(tmp_path.iterdir()) == []


def test_contact_ids_stay_in_the_file_and_pass_into_the_next_one(tmp_path) -> None:
    first, second = str(tmp_path / "first.parquet"), str(tmp_path / "second.parquet")
    write_state(first, _state(2), None)
    state = read_state(first, None, IDENTITY, LOG)
    assert state is not None
    assert state.table.column("contact_id").null_count == 2  # not in memory
    assert state.table.column("file_row").to_pylist() == [0, 1]
    write_state(second, state, None)
    assert pq.read_table(second).column("contact_id").to_pylist() == ["id-ann", "id-bob"]


def test_state_round_trip_and_another_tasks_state_refused(tmp_path) -> None:
    path = str(tmp_path / "state.parquet")
    write_state(path, _state(2), None)
    assert read_state(path, None, IDENTITY, LOG).table.num_rows == 2
    other = StateIdentity(("22222222-2222-2222-2222-222222222222",), "mapping", IDENTITY.account)
    with pytest.raises(ExportStateError, match="belongs to another task"):
        read_state(path, None, other, LOG)
    assert read_state(str(tmp_path / "none.parquet"), None, IDENTITY, LOG) is None


def test_fingerprints_are_stable_and_tell_changes_apart() -> None:
    objects = pa.array(['{"email":"a@x.com"}', '{"email":"a@x.com","first_name":"A"}'])
    first, second = fingerprints(objects).to_pylist(), fingerprints(objects).to_pylist()
    assert first == second
    assert first[0] != first[1]
    # BLAKE2b-64 of the bytes, not Python's per-process hash: the same on every machine.
    digest = hashlib.blake2b(b'{"email":"a@x.com"}', digest_size=8).digest()
    assert first[0] == int.from_bytes(digest, "little", signed=True)
