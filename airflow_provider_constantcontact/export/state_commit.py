"""The journal of a run with state, and committing it as the new state once the run is confirmed.

Before changing anything a run writes the state it means to commit, its own changes marked
(``importing``, ``removing``), as a hidden journal beside the state file. Once the imports and
removals are confirmed the operator calls :func:`commit_state`: the journal becomes the state
(atomically) and is deleted. A killed or failed run leaves the previous state as it was, and
its journal tells the next run which memberships it was removing (see docs/export-state.md).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from airflow_provider_constantcontact.export.changes import JOURNAL_SCHEMA, ChangeCheck, journal_rows
from airflow_provider_constantcontact.export.delta import SyncPlan
from airflow_provider_constantcontact.export.rejects import output_path
from airflow_provider_constantcontact.export.state import (
    IMPORTING,
    MEMBER,
    METADATA_KEY,
    REMOVING,
    SENT,
    UNSUBSCRIBED,
    ExportState,
    StateIdentity,
    StateMeta,
    journal_path,
    mapping_fingerprint,
    read_row_groups,
    remove_file,
    write_state_batches,
)

if TYPE_CHECKING:
    from airflow_provider_constantcontact.hooks.constantcontact import ConstantContactHook


#: A run with more activities than this is not looked up for its time window (requests).
MAX_WINDOW_ACTIVITIES = 50


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def state_identity(
    hook: ConstantContactHook, list_ids: Sequence[str], field_mapping: dict[str, str]
) -> StateIdentity:
    """This task's identity: its lists, its mapping, its account (API URL and OAuth client id)."""
    account = f"{hook.api_base_url} client {hook.connection.login}"
    return StateIdentity(tuple(sorted(list_ids)), mapping_fingerprint(field_mapping), account)


def read_journal(path: str, conn_id: str | None, identity: StateIdentity) -> pa.Table:
    """The memberships a killed run was removing (list_id, email); none without a journal of this task."""
    target = output_path(path, conn_id)
    if not target.exists():
        return JOURNAL_SCHEMA.empty_table()
    with target.open("rb") as handle:
        parquet = pq.ParquetFile(handle)
        raw = (parquet.schema_arrow.metadata or {}).get(METADATA_KEY)
        if raw is None or identity.problems(StateMeta.from_json(raw, path).identity):
            return JOURNAL_SCHEMA.empty_table()
        table = read_row_groups(parquet, ["list_id", "email", "status"])
    return journal_rows(table.filter(pc.equal(table.column("status"), REMOVING)))


def stage_journal(sync: SyncPlan, check: ChangeCheck, identity: StateIdentity) -> ExportState:
    """The state this run will commit: the plan's rows and the new watermark and expected counts.

    The expected membership count of each list is a range: what was counted now, minus the
    removals, plus the contacts new to the state (members already or not), give or take the
    unsubscribed members (counted by one reading of ``membership_count``, not by the other).
    """
    assert sync.journal is not None
    expected: dict[str, list[int]] = {}
    full_at = dict(check.state.meta.full_listing_at)
    for list_id, entry in check.lists.items():
        removed = next((plan.count for plan in sync.removals if plan.list_id == list_id), 0)
        status = sync.journal.for_list(list_id).column("status")
        unsubscribed = int(pc.sum(pc.cast(pc.equal(status, UNSUBSCRIBED), pa.int64())).as_py() or 0)
        base = entry.members - removed
        expected[list_id] = [max(base - unsubscribed, 0), base + sync.lists[list_id].to_add + unsubscribed]
        if entry.mode == "full":
            full_at[list_id] = _now()
    meta = StateMeta(
        identity=identity,
        watermark=check.watermark,
        members_expected=expected,
        full_listing_at=full_at,
        # Kept until a confirmed run with activities replaces it: a quiet day must not make the
        # next check read the last big import back.
        own_changes=check.state.meta.own_changes,
    )
    return replace(sync.journal, meta=meta)


def commit_state(
    hook: ConstantContactHook,
    state_path: str,
    conn_id: str | None,
    *,
    activity_ids: Sequence[str],
    confirmed: bool,
    log: logging.Logger | Any,
) -> dict[str, int]:
    """Make the journal the state: confirmed (``importing`` -> member, ``removing`` dropped) or not.

    Unconfirmed (``wait_for_completion=False``): the activities are recorded and the next run
    checks them (Constant Contact keeps them 10 days). Returns the state's status counts.
    """
    path = journal_path(state_path)
    target = output_path(path, conn_id)
    if not target.exists():
        log.info("No export state journal at %s: nothing to commit (a dry run, or already committed)", path)
        return {}
    with target.open("rb") as handle:
        parquet = pq.ParquetFile(handle)
        meta = StateMeta.from_json((parquet.schema_arrow.metadata or {})[METADATA_KEY], path)
        meta = _committed_meta(hook, meta, activity_ids, confirmed=confirmed)
        # A row group at a time: the journal is never whole in memory.
        counts = write_state_batches(
            state_path,
            meta,
            (
                _committed_rows(parquet.read_row_group(index, use_threads=False), confirmed=confirmed)
                for index in range(parquet.num_row_groups)
            ),
            conn_id,
        )
    remove_file(path, conn_id)
    log.info(
        "Export state written to %s (%s): %s",
        state_path,
        "confirmed" if confirmed else "imports not yet confirmed: the next run checks them",
        counts,
    )
    return counts


def _committed_rows(table: pa.Table, *, confirmed: bool) -> pa.Table:
    """Journal rows as committed: ``importing`` -> member (or sent), ``removing`` dropped once confirmed."""
    status = table.column("status")
    if confirmed:
        table = table.filter(pc.not_equal(status, REMOVING))
        status = table.column("status")
    after = pa.scalar(MEMBER if confirmed else SENT, pa.int8())
    status = pc.if_else(pc.equal(status, IMPORTING), after, status)
    return table.set_column(table.schema.get_field_index("status"), "status", status)


def _committed_meta(
    hook: ConstantContactHook, meta: StateMeta, activity_ids: Sequence[str], *, confirmed: bool
) -> StateMeta:
    """The journal's metadata as committed: counts read back, the window of the run's own changes."""
    members = dict(meta.members_expected)
    if confirmed and activity_ids:
        wanted = set(meta.identity.list_ids)
        for item in hook.iter_contact_lists(include_membership_count=True):
            if item.get("list_id") in wanted and item.get("membership_count") is not None:
                members[item["list_id"]] = [int(item["membership_count"])] * 2
    watermark, own_changes = meta.watermark, meta.own_changes
    if activity_ids and len(activity_ids) <= MAX_WINDOW_ACTIVITIES:
        # Server times of the run's own changes: the next change query leaves them out.
        activities = [hook.get_activity(activity_id) for activity_id in activity_ids]
        begin = min((a["created_at"] for a in activities if a.get("created_at")), default=None)
        end = max((a.get("updated_at") or a.get("created_at") or "" for a in activities), default="")
        # Unconfirmed, the window's end is unknown: the next run reads its own changes back.
        own_changes = [begin, end] if confirmed and begin and end else None
        # The first activity's creation is the server's clock just after the lists and changes
        # were read: the watermark moves up to it (changes are re-read an hour back, and the
        # count check covers the rest), so a full listing of old contacts is not read again.
        if begin and (watermark is None or begin > watermark):
            watermark = begin
    return replace(
        meta,
        watermark=watermark,
        own_changes=own_changes,
        members_expected=members,
        pending_activity_ids=[] if confirmed else list(activity_ids),
        written_at=_now(),
    )
