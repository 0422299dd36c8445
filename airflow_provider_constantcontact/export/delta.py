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

from airflow_provider_constantcontact.export import lookup
from airflow_provider_constantcontact.export.changes import ChangeCheck
from airflow_provider_constantcontact.export.mirror import ListRemovals
from airflow_provider_constantcontact.export.state import (
    IMPORTING,
    LEFT,
    MEMBER,
    REMOVING,
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

    #: Per segment row (the smallest unsigned type with a bit per list): bit i set = send the
    #: row to list i (0: not sent).
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
) -> SyncPlan:
    """The plan for ``list_ids`` (bit i = list i) from the checked state and the segment's contacts.

    ``contacts``: one row per valid distinct contact (``row`` uint32, ``email``, ``fingerprint``).
    Mirror removals come from ``check`` (found when the lists' changes were read).
    """
    mask_type = next(
        t for t in (pa.uint8(), pa.uint16(), pa.uint32(), pa.uint64()) if t.bit_width >= len(list_ids)
    )
    mask_of_contact = pa.repeat(pa.scalar(0, mask_type), contacts.num_rows)
    reason_of_contact = pa.repeat(_code(KEPT_UNCHANGED), contacts.num_rows)
    plan = SyncPlan(masks=pa.array([], mask_type), kept=pa.array([], pa.int8()))
    journal_tables: list[pa.Table] = []
    emails = contacts.column("email")
    new_fingerprints = contacts.column("fingerprint")
    for bit, list_id in enumerate(list_ids):
        state_rows = check.state.for_list(list_id)
        # Per contact, the position of its email among the list's state rows (null: new to the
        # list): a lookup in contact order, not a join's wide copy of both sides to sort back.
        match = lookup.index_in(emails, state_rows.column("email"))
        status = pc.fill_null(state_rows.column("status").take(match), _code(-1)).combine_chunks()
        new = pc.equal(status, -1)
        out = pc.is_in(status, value_set=pa.array([LEFT, UNSUBSCRIBED], pa.int8()))
        old_fingerprints = state_rows.column("fingerprint").take(match)
        same = pc.fill_null(pc.equal(new_fingerprints, old_fingerprints), False)
        del old_fingerprints
        confirmed_same = pc.and_(pc.equal(status, MEMBER), same).combine_chunks()
        skip = pc.and_(confirmed_same, pa.scalar(not full_refresh))
        send = pc.and_(pc.invert(out), pc.invert(skip))
        bit_value = pa.scalar(1 << bit, mask_type)
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
        removal = check.lists[list_id].removals
        if removal is not None:
            plan.removals.append(removal)
        sent = pa.table({"fingerprint": new_fingerprints.filter(send), "match": match.filter(send)})
        # Emails only of the contacts new to the list: the others' are in their state rows.
        new_emails = emails.filter(pc.and_(send, new))
        del match, status, new, out, same, confirmed_same, skip, send
        journal_tables.append(_journal_rows(list_id, state_rows, sent, new_emails, removal))
        del sent, state_rows
    # Per contact -> per segment row (rows of no contact: 0).
    contact_rows = lookup.positions_mask(contacts.column("row"), rows_read)
    plan.masks = _scatter(contact_rows, mask_of_contact, mask_type)
    kept = pc.if_else(pc.equal(mask_of_contact, 0), reason_of_contact, _code(0))
    plan.kept = _scatter(contact_rows, kept, pa.int8())
    plan.journal = check.state.with_table(pa.concat_tables(journal_tables))
    return plan


def _count(mask: pa.Array | pa.ChunkedArray) -> int:
    return int(pc.sum(pc.cast(mask, pa.int64())).as_py() or 0)


def _scatter(rows: pa.Array, values: pa.Array | pa.ChunkedArray, data_type: pa.DataType) -> pa.Array:
    """Zeros, with ``values`` (in row order) where ``rows`` (a boolean mask) is true."""
    zeros = pa.repeat(pa.scalar(0, data_type), len(rows))
    return pc.replace_with_mask(zeros, rows, lookup.one_array(values).cast(data_type))


def _journal_rows(
    list_id: str,
    state_rows: pa.Table,
    sent: pa.Table,
    new_emails: pa.Array | pa.ChunkedArray,
    removal: ListRemovals | None,
) -> pa.Table:
    """The list's state as it will be once this run's changes are confirmed (IMPORTING / REMOVING marked).

    ``sent``: the contacts sent to the list (fingerprint, ``match``: their state row or null);
    ``new_emails``: the emails of those without a state row, in order.
    A sent contact the state has a row for updates that row where it is (fingerprint and status
    only: the emails and contact ids of a million rows are shared, not copied); the others are new.
    """
    match = sent.column("match").combine_chunks()
    known = pc.is_valid(match)
    positions = match.filter(known)
    updated = state_rows
    if len(positions):
        replaced = lookup.positions_mask(positions, state_rows.num_rows)
        # replace_with_mask fills the replaced rows in row order: the fingerprints sorted to match.
        in_row_order = sent.column("fingerprint").filter(known).take(pc.sort_indices(positions))
        fingerprints = pc.replace_with_mask(
            state_rows.column("fingerprint").combine_chunks(), replaced, lookup.one_array(in_row_order)
        )
        status = pc.if_else(replaced, _code(IMPORTING), state_rows.column("status"))
        updated = state_rows.set_column(1, "fingerprint", fingerprints).set_column(2, "status", status)
    new = pc.invert(known)
    added = _count(new)
    parts = [
        updated,
        _new_rows(
            updated.schema,
            email=new_emails,
            fingerprint=sent.column("fingerprint").filter(new),
            status=pa.repeat(_code(IMPORTING), added),
        ),
    ]
    if removal is not None and removal.count:
        removing = lookup.is_in(updated.column("email"), removal.emails)
        status = pc.if_else(removing, _code(REMOVING), updated.column("status"))
        parts[0] = updated.set_column(2, "status", status)
        # A set of the few emails removed, not of every state row's.
        listed = updated.column("email").filter(removing)
        listed_only = pc.invert(lookup.is_in(removal.emails, listed))
        parts.append(
            _new_rows(
                updated.schema,
                email=removal.emails.filter(listed_only),
                status=pa.repeat(_code(REMOVING), _count(listed_only)),
                contact_id=removal.contact_ids.filter(listed_only),
            )
        )
    return state_table(list_id, pa.concat_tables(parts))


def _new_rows(schema: pa.Schema, **columns: pa.Array | pa.ChunkedArray) -> pa.Table:
    """Rows of ``schema`` (a list's state rows) from ``columns``; the columns not given are null."""
    count = len(columns["email"])
    return pa.table(
        [
            columns[field.name].cast(field.type) if field.name in columns else pa.nulls(count, field.type)
            for field in schema
        ],
        schema=schema,
    )
