"""Apply what was read of one list in Constant Contact to the list's export-state rows.

What was read is either the list's full listing (every member) or the contacts that changed
since the last run (member of the list or not). Both are matched with the state rows on the
normalised email by bucketed Arrow lookups (:mod:`.lookup`), never Python objects per contact,
and a row is copied only where something about it changed.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from airflow_provider_constantcontact.export import lookup
from airflow_provider_constantcontact.export.state import FILE_ROW, LEFT, MEMBER, UNSUBSCRIBED


def reconcile(
    rows: pa.Table, seen: pa.Table, journal: pa.Array, *, complete: bool
) -> tuple[pa.Table, dict[str, int]]:
    """Apply what was seen of one list to its state rows; the new rows and the counts of changes.

    ``rows``: the list's state (email, fingerprint, status, contact_id, and ``file_row`` for rows
    read from a file). ``seen``: contacts read (email, m_contact_id or, for a full listing whose
    ids were spilled, m_file_row, m_member, m_unsub); ``complete`` when they are every member of
    the list (a full listing: a state row not seen is not a member). ``journal``: emails the export itself
    removed (or was removing): gone from the list, they are dropped, not taken for leavers.
    """
    empty = pc.equal(seen.column("email"), "")
    if pc.any(empty).as_py():
        seen = seen.filter(pc.invert(empty))
    # A full listing's contact ids are in a file (``m_file_row``), what changed has them here.
    seen_id = "m_file_row" if "m_file_row" in seen.column_names else "m_contact_id"
    if lookup.has_duplicates(seen.column("email")):  # a listing's emails are distinct
        seen = (
            seen.group_by("email", use_threads=False)
            .aggregate([(seen_id, "first"), ("m_member", "any"), ("m_unsub", "any")])
            .rename_columns(["email", seen_id, "m_member", "m_unsub"])
        )
    whole, touched = None, None
    if not complete:
        # A state row not seen is as it was (no change, no count): only the rows seen are joined,
        # and their outcome is written back into the whole list's rows (no copy of the others).
        whole, touched = rows, lookup.is_in(rows.column("email"), seen.column("email"))
        rows = rows.filter(touched)
    joined = _full_outer(rows, seen)
    old = joined.column("status").combine_chunks()
    was_seen = pc.is_valid(joined.column("m_member"))
    member = was_seen if complete else pc.fill_null(joined.column("m_member"), False)
    gone = pc.invert(was_seen) if complete else pc.and_(was_seen, pc.invert(member))
    unsub = pc.and_(was_seen, pc.fill_null(joined.column("m_unsub"), False))
    in_journal = lookup.is_in(joined.column("email"), journal)
    known = pc.is_valid(old)
    old_filled = pc.fill_null(old, pa.scalar(-1, pa.int8()))
    is_member = pc.equal(old_filled, MEMBER)
    out_of_list = pc.is_in(old_filled, value_set=pa.array([LEFT, UNSUBSCRIBED], pa.int8()))

    def code(value: int) -> pa.Scalar:
        return pa.scalar(value, pa.int8())

    status = pc.case_when(
        pc.make_struct(
            pc.and_(pc.invert(known), member),  # a member the state did not know: joined outside
            pc.and_(known, unsub),
            pc.and_(is_member, pc.and_(gone, in_journal)),  # removed by the export: dropped below
            pc.and_(is_member, gone),
            pc.and_(out_of_list, member),  # came back by themselves
        ),
        code(MEMBER),
        code(UNSUBSCRIBED),
        code(-1),
        code(LEFT),
        code(MEMBER),
        old_filled,
    )
    keep = pc.not_equal(status, -1)
    counts = {
        "left": _count(pc.and_(is_member, pc.equal(status, LEFT))),
        "unsubscribed": _count(
            pc.and_(pc.invert(out_of_list), pc.and_(known, pc.equal(status, UNSUBSCRIBED)))
        ),
        "joined": _count(
            pc.and_(pc.invert(pc.and_(known, pc.invert(out_of_list))), pc.equal(status, MEMBER))
        ),
        "removed_by_export": _count(pc.and_(known, pc.invert(keep))),
    }
    # Departures counted for the membership check: members no more (left, dropped, unsubscribed ones
    # counted apart because either reading of membership_count is accepted).
    counts["departed"] = counts["left"] + counts["removed_by_export"]
    columns = {name: joined.column(name) for name in rows.column_names}
    columns["status"] = status
    own_ids = joined.column("contact_id")
    if seen_id == "m_file_row":  # the ids seen win: the file rows of the listing's spill
        seen_rows = joined.column(seen_id)
        own_rows = joined.column(FILE_ROW) if FILE_ROW in columns else pa.nulls(len(seen_rows), pa.uint32())
        columns[FILE_ROW] = pc.coalesce(seen_rows, own_rows)
        columns["contact_id"] = pc.if_else(pc.is_valid(seen_rows), pa.scalar(None, own_ids.type), own_ids)
    else:  # the ids seen win; a state's own ids are mostly still in its file (null here)
        seen_ids = joined.column(seen_id).cast(own_ids.type)
        columns["contact_id"] = (
            seen_ids if own_ids.null_count == len(own_ids) else pc.coalesce(seen_ids, own_ids)
        )
    result = pa.table(columns)
    if whole is not None and touched is not None:
        return _written_back(whole, touched, result, keep), counts
    if not pc.all(keep).as_py():  # else every row stays: no copy
        result = result.filter(keep)
    return result, counts


def _written_back(rows: pa.Table, touched: pa.Array, result: pa.Table, keep: pa.Array) -> pa.Table:
    """``rows`` with the outcome of their ``touched`` rows (the first rows of ``result``, in order)
    written back where they are, then the new rows (the rest of ``result``, those kept).

    A column is copied only when something in it changed: on most days the status alone.
    """
    count = _count(touched)
    mine, new = result.slice(0, count), result.slice(count)
    kept_mine = keep.slice(0, count)
    for name in ("status", "contact_id"):
        before = rows.column(name).filter(touched)
        after = mine.column(name)
        both_null = pc.and_(pc.is_null(before), pc.is_null(after))
        if not pc.all(pc.fill_null(pc.equal(before, after), both_null)).as_py():
            index = rows.schema.get_field_index(name)
            values = pc.replace_with_mask(rows.column(name).combine_chunks(), touched, after.combine_chunks())
            rows = rows.set_column(index, name, values)
    if not pc.all(kept_mine).as_py():
        dropped = pc.replace_with_mask(
            pa.repeat(pa.scalar(False), rows.num_rows), touched, pc.invert(kept_mine).combine_chunks()
        )
        rows = rows.filter(pc.invert(dropped))
    new = new.filter(keep.slice(count))
    return pa.concat_tables([rows, new.select(rows.column_names).cast(rows.schema)]) if new.num_rows else rows


def _full_outer(rows: pa.Table, seen: pa.Table) -> pa.Table:
    """``rows`` full-outer-joined with ``seen`` (distinct emails) on the email, by index lookup.

    The state rows each with what was seen of their email (nulls when not seen), then the seen
    emails no state row has. Leaner than an Acero hash join of a million strings a side.
    """
    match = lookup.index_in(rows.column("email"), seen.column("email"))
    seen_names = [name for name in seen.column_names if name != "email"]
    known = pa.table(
        [*rows.columns, *(seen.column(name).take(match) for name in seen_names)],
        names=[*rows.column_names, *seen_names],
    )
    matched = match.drop_null()
    unknown = seen
    if len(matched):
        unknown = seen.filter(pc.invert(lookup.positions_mask(matched, seen.num_rows)))
    count = unknown.num_rows
    others = pa.table(
        [
            *(
                unknown.column("email") if name == "email" else pa.nulls(count, rows.schema.field(name).type)
                for name in rows.column_names
            ),
            *(unknown.column(name) for name in seen_names),
        ],
        schema=known.schema,
    )
    return pa.concat_tables([known, others])


def _count(mask: pa.Array | pa.ChunkedArray) -> int:
    return int(pc.sum(pc.cast(mask, pa.int64())).as_py() or 0)
