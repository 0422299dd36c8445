"""The plan of a run with state: per list, who to add, update, skip, keep out and remove.

Per list, the segment's valid distinct contacts (row, email, fingerprint) are matched with the
list's state rows on the email (an Arrow index lookup, ``pc.index_in``): new to the list -> add;
fingerprint changed or import not confirmed -> update; confirmed and unchanged -> skip
(``full_refresh`` re-sends them); left the list or unsubscribed -> kept out, never sent to that
list. Each row gets a bit mask of the lists it goes to, so pass two can send one body to several
lists. Mirror removals are the list's members (the full listing, or the state's members) not in the segment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from airflow_provider_constantcontact.export.changes import ChangeCheck
from airflow_provider_constantcontact.export.dedup import chunk_email_hashes
from airflow_provider_constantcontact.export.mirror import ListRemovals
from airflow_provider_constantcontact.export.state import (
    IMPORTING,
    LEFT,
    MEMBER,
    REMOVING,
    SENT,
    UNSUBSCRIBED,
    ExportState,
    state_table,
)

#: What pass two does with a valid, distinct row that is sent to no list.
KEPT_LEFT, KEPT_UNSUBSCRIBED, KEPT_UNCHANGED = 1, 2, 3


@dataclass
class ListPlan:
    """One list's share of the plan (counts of contacts)."""

    to_add: int = 0
    to_update: int = 0
    unchanged: int = 0
    left: int = 0
    unsubscribed: int = 0


@dataclass
class SyncPlan:
    """What a run with state sends, keeps out and removes, and the state it will commit."""

    #: uint64 per segment row: bit i set = send the row to list i (0: not sent).
    masks: pa.Array
    #: int8 per segment row: 0, or why a valid distinct row is not sent (KEPT_*).
    kept: pa.Array
    lists: dict[str, ListPlan] = field(default_factory=dict)
    removals: list[ListRemovals] = field(default_factory=list)
    #: The state to commit once the run's changes are confirmed (sends: IMPORTING, removals: REMOVING).
    journal: ExportState | None = None

    def count(self, name: str) -> int:
        return sum(getattr(plan, name) for plan in self.lists.values())


def _code(value: int) -> pa.Scalar:
    return pa.scalar(value, pa.int8())


def plan_sync(
    check: ChangeCheck,
    list_ids: Sequence[str],
    contacts: pa.Table,
    rows_read: int,
    *,
    full_refresh: bool,
    segment_hashes: pa.Array | None,
) -> SyncPlan:
    """The plan for ``list_ids`` (bit i = list i) from the checked state and the segment's contacts.

    ``contacts``: one row per valid distinct contact (``row`` uint32, ``email``, ``fingerprint``).
    ``segment_hashes``: mirror mode, the hashes of every email of the segment's rows.
    """
    rows = contacts.column("row").combine_chunks()
    mask_of_contact = pa.repeat(pa.scalar(0, pa.uint64()), contacts.num_rows)
    reason_of_contact = pa.repeat(_code(KEPT_UNCHANGED), contacts.num_rows)
    plan = SyncPlan(masks=pa.array([], pa.uint64()), kept=pa.array([], pa.int8()))
    journal_tables: list[pa.Table] = []
    emails = contacts.column("email").combine_chunks()
    new_fingerprints = contacts.column("fingerprint").combine_chunks()
    for bit, list_id in enumerate(list_ids):
        state_rows = check.state.for_list(list_id)
        # Per contact, the position of its email among the list's state rows (null: new to the
        # list): a lookup in contact order, not a join's wide copy of both sides to sort back.
        match = pc.index_in(emails, value_set=state_rows.column("email").combine_chunks())
        status = pc.fill_null(state_rows.column("status").take(match), _code(-1)).combine_chunks()
        new = pc.equal(status, -1)
        out = pc.is_in(status, value_set=pa.array([LEFT, UNSUBSCRIBED], pa.int8()))
        old_fingerprints = state_rows.column("fingerprint").take(match)
        same = pc.fill_null(pc.equal(new_fingerprints, old_fingerprints), False)
        del old_fingerprints
        confirmed_same = pc.and_(pc.equal(status, MEMBER), same).combine_chunks()
        skip = pc.and_(confirmed_same, pa.scalar(not full_refresh))
        send = pc.and_(pc.invert(out), pc.invert(skip))
        bit_value = pa.scalar(1 << bit, pa.uint64())
        mask_of_contact = pc.if_else(send, pc.bit_wise_or(mask_of_contact, bit_value), mask_of_contact)
        # A row kept out of one list for a reason says so, unless sent to another list.
        reason_of_contact = pc.if_else(
            pc.equal(status, LEFT),
            _code(KEPT_LEFT),
            pc.if_else(
                pc.and_(pc.equal(status, UNSUBSCRIBED), pc.not_equal(reason_of_contact, KEPT_LEFT)),
                _code(KEPT_UNSUBSCRIBED),
                reason_of_contact,
            ),
        )
        plan.lists[list_id] = ListPlan(
            to_add=_count(pc.and_(send, new)),
            to_update=_count(pc.and_(send, pc.invert(new))),
            unchanged=_count(skip),
            left=_count(pc.equal(status, LEFT)),
            unsubscribed=_count(pc.equal(status, UNSUBSCRIBED)),
        )
        removal = _removals(check, list_id, state_rows, segment_hashes)
        if removal is not None:
            plan.removals.append(removal)
        sent = pa.table(
            {
                "email": emails.filter(send),
                "fingerprint": new_fingerprints.filter(send),
                "match": match.filter(send),
            }
        )
        del match, status, new, out, same, confirmed_same, skip, send
        journal_tables.append(_journal_rows(list_id, state_rows, sent, removal))
        del sent, state_rows
    plan.masks = _scatter(rows, mask_of_contact, rows_read, pa.uint64())
    kept = pc.if_else(pc.equal(mask_of_contact, 0), reason_of_contact, _code(0))
    plan.kept = _scatter(rows, kept, rows_read, pa.int8())
    plan.journal = ExportState(pa.concat_tables(journal_tables), check.state.meta)
    return plan


def _count(mask: pa.Array | pa.ChunkedArray) -> int:
    return int(pc.sum(pc.cast(mask, pa.int64())).as_py() or 0)


def _scatter(rows: pa.Array, values: pa.Array, length: int, data_type: pa.DataType) -> pa.Array:
    """A ``length`` array of zeros with ``values`` placed at ``rows`` (ascending row numbers)."""
    if not len(rows):
        return pa.repeat(pa.scalar(0, data_type), length)
    # Positions: for each of the length slots, the index into values (or null when absent).
    slots = pa.repeat(pa.scalar(None, pa.int64()), length)
    index = pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), len(rows)))
    slots = pc.replace_with_mask(
        slots,
        pc.is_in(pa.array(range(length), pa.int64()), value_set=rows.cast(pa.int64())),
        pc.subtract(index, 1),
    )
    return pc.fill_null(pc.take(values, slots), pa.scalar(0, data_type)).cast(data_type)


def _removals(
    check: ChangeCheck, list_id: str, state_rows: pa.Table, segment_hashes: pa.Array | None
) -> ListRemovals | None:
    """Mirror mode: the members of ``list_id`` not in the segment (full listing, else the state's members)."""
    if segment_hashes is None:
        return None
    listed = check.lists[list_id]
    if listed.listing is not None:
        members = listed.listing.rename_columns(["email", "contact_id", "member", "unsub"])
        current = None
    else:
        members = state_rows
        current = pc.is_in(state_rows.column("status"), value_set=pa.array([MEMBER, SENT], pa.int8()))
    # Hashed where they are (no copy of a million members' rows); only the leavers are copied.
    leave = pc.invert(pc.is_in(chunk_email_hashes(members.column("email")), value_set=segment_hashes))
    if current is not None:
        leave = pc.and_(current, leave)
    return ListRemovals(
        list_id,
        listed.members,
        members.column("contact_id").filter(leave).combine_chunks(),
        members.column("email").filter(leave).combine_chunks(),
    )


def _journal_rows(
    list_id: str, state_rows: pa.Table, sent: pa.Table, removal: ListRemovals | None
) -> pa.Table:
    """The list's state as it will be once this run's changes are confirmed (IMPORTING / REMOVING marked).

    ``sent``: the contacts sent to the list (email, fingerprint, ``match``: their state row or null).
    """
    match = sent.column("match").combine_chunks()
    sent_rows = pa.table(
        {
            "email": sent.column("email"),
            "fingerprint": sent.column("fingerprint"),
            "status": pa.repeat(_code(IMPORTING), sent.num_rows),
            "contact_id": state_rows.column("contact_id").take(match),
        }
    )
    # The state rows whose email is sent now are replaced by it: integers, not a set of emails.
    replaced = match.drop_null()
    others = state_rows
    if len(replaced):
        positions = pa.array(range(state_rows.num_rows), replaced.type)
        others = state_rows.filter(pc.invert(pc.is_in(positions, value_set=replaced)))
        del positions
    parts = [others, sent_rows]
    if removal is not None and removal.count:
        removing = pc.is_in(others.column("email"), value_set=removal.emails)
        status = pc.if_else(removing, _code(REMOVING), others.column("status"))
        others = others.set_column(2, "status", status)
        # A set of the few emails removed, not of every state row's.
        listed = others.column("email").filter(removing)
        listed_only = pc.invert(pc.is_in(removal.emails, value_set=listed))
        outsiders = pa.table(
            {
                "email": removal.emails.filter(listed_only),
                "fingerprint": pa.nulls(_count(listed_only), pa.int64()),
                "status": pa.repeat(_code(REMOVING), _count(listed_only)),
                "contact_id": removal.contact_ids.filter(listed_only),
            }
        )
        parts = [others, sent_rows, outsiders]
    return state_table(list_id, pa.concat_tables([part.cast(parts[1].schema) for part in parts]))
