"""What changed in Constant Contact since the state was written: cheap when it can be trusted.

Per run with a state: one ``GET /contact_lists?include_membership_count=all`` for the counts,
``GET /contacts?updated_after=<watermark - margin>&status=all&include=list_memberships`` and
``optout_after`` pages for the contacts that changed (all lists at once), then a trust check per
list: the list's ``membership_count`` must lie in the range the state and the changes predict.
A list is read in full instead (``GET /contacts?lists=<id>``, members / 500 requests) on a first
run, on ``full_refresh``, when the state is older than :data:`MAX_STATE_AGE` (activity records
are gone), when its count is unknown or disagrees, or when a mirror removal lacks a contact id.
Either way the state rows of the list are reconciled in Arrow (one index lookup on the email),
see :func:`reconcile`.
docs/export-state.md explains which API semantics are documented and which are assumptions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from airflow_provider_constantcontact.constants import MAX_PAGE_SIZE
from airflow_provider_constantcontact.exceptions import ConstantContactNotFoundError
from airflow_provider_constantcontact.export.cleaning import normalize_emails
from airflow_provider_constantcontact.export.dedup import chunk_email_hashes
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

if TYPE_CHECKING:
    from airflow_provider_constantcontact.hooks.constantcontact import ConstantContactHook

#: A state older than this is not trusted for a cheap check: activity records live 10 days.
MAX_STATE_AGE = timedelta(days=10)
#: Changes are read from this long before the watermark (clock skew, eventual consistency).
WATERMARK_MARGIN = timedelta(hours=1)
#: Log a full listing's progress every this many pages.
PROGRESS_EVERY_PAGES = 20

_PAGE_SCHEMA = pa.schema(
    [
        pa.field("email", pa.string()),
        pa.field("m_contact_id", pa.string()),
        pa.field("m_member", pa.bool_()),
        pa.field("m_unsub", pa.bool_()),
    ]
)


@dataclass
class ListCheck:
    """How one list was read and what was found."""

    list_id: str
    #: "full" (every member read) or "incremental" (counts and changed contacts).
    mode: str
    #: Members now (membership_count, or the listing's length).
    members: int
    #: The listing (email, contact_id, unsubscribed) after a full read; None after a cheap check.
    listing: pa.Table | None = None
    left: int = 0
    unsubscribed: int = 0
    joined: int = 0
    #: Journal entries confirmed removed by the export (dropped from the state).
    removed_by_export: int = 0
    reason: str = ""


@dataclass
class ChangeCheck:
    """The state with what changed applied, per-list outcomes, requests used, the new watermark."""

    state: ExportState
    lists: dict[str, ListCheck] = field(default_factory=dict)
    requests: int = 0
    watermark: str | None = None


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _later(first: str | None, second: str | None) -> str | None:
    a, b = _parse_time(first), _parse_time(second)
    if a is None or b is None:
        return first if b is None else second
    return first if a >= b else second


def _page_table(page: Sequence[dict[str, Any]], list_id: str | None) -> tuple[pa.Table, str | None]:
    """A page of contacts as Arrow (email, id, member of ``list_id``, unsubscribed); its latest updated_at."""
    addresses = [contact.get("email_address") or {} for contact in page]
    latest: str | None = None
    for contact in page:
        latest = _later(latest, contact.get("updated_at"))
    members = [
        True if list_id is None else list_id in (contact.get("list_memberships") or ()) for contact in page
    ]
    table = pa.table(
        [
            pc.fill_null(normalize_emails(pa.array([a.get("address") for a in addresses], pa.string())), ""),
            pa.array([contact.get("contact_id") for contact in page], pa.string()),
            pa.array(members, pa.bool_()),
            pa.array([a.get("permission_to_send") == "unsubscribed" for a in addresses], pa.bool_()),
        ],
        schema=_PAGE_SCHEMA,
    )
    return table, latest


def reconcile(
    rows: pa.Table, seen: pa.Table, journal: pa.Array, *, complete: bool
) -> tuple[pa.Table, dict[str, int]]:
    """Apply what was seen of one list to its state rows; the new rows and the counts of changes.

    ``rows``: the list's state (email, fingerprint, status, contact_id). ``seen``: contacts read
    (email, m_contact_id, m_member, m_unsub); ``complete`` when they are every member of the list
    (a full listing: a state row not seen is not a member). ``journal``: emails the export itself
    removed (or was removing): gone from the list, they are dropped, not taken for leavers.
    """
    seen = seen.filter(pc.not_equal(seen.column("email"), ""))
    if pc.count_distinct(seen.column("email")).as_py() < seen.num_rows:  # a listing's emails are distinct
        seen = (
            seen.group_by("email", use_threads=False)
            .aggregate([("m_contact_id", "first"), ("m_member", "any"), ("m_unsub", "any")])
            .rename_columns(["email", "m_contact_id", "m_member", "m_unsub"])
        )
    untouched = None
    if not complete:
        # A state row not seen is as it was (no change, no count): only the rows seen are joined,
        # not a copy of the whole list's rows.
        touched = pc.is_in(rows.column("email"), value_set=seen.column("email"))
        if pc.any(touched).as_py():
            untouched = rows.filter(pc.invert(touched))
            rows = rows.filter(touched)
        else:  # a quiet day: nothing to copy
            untouched, rows = rows, rows.slice(0, 0)
    joined = _full_outer(rows, seen)
    old = joined.column("status").combine_chunks()
    was_seen = pc.is_valid(joined.column("m_member"))
    member = was_seen if complete else pc.fill_null(joined.column("m_member"), False)
    gone = pc.invert(was_seen) if complete else pc.and_(was_seen, pc.invert(member))
    unsub = pc.and_(was_seen, pc.fill_null(joined.column("m_unsub"), False))
    in_journal = pc.is_in(joined.column("email"), value_set=journal)
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
    result = pa.table(
        {
            "email": joined.column("email"),
            "fingerprint": joined.column("fingerprint"),
            "status": status,
            "contact_id": pc.coalesce(joined.column("m_contact_id"), joined.column("contact_id")),
        }
    ).filter(keep)
    if untouched is not None and untouched.num_rows:
        result = pa.concat_tables([untouched.select(result.column_names).cast(result.schema), result])
    return result, counts


def _full_outer(rows: pa.Table, seen: pa.Table) -> pa.Table:
    """``rows`` full-outer-joined with ``seen`` (distinct emails) on the email, by index lookup.

    The state rows each with what was seen of their email (nulls when not seen), then the seen
    emails no state row has. Leaner than an Acero hash join of a million strings a side.
    """
    match = pc.index_in(rows.column("email"), value_set=seen.column("email").combine_chunks())
    seen_columns = [seen.column(name).combine_chunks() for name in ("m_contact_id", "m_member", "m_unsub")]
    known = pa.table(
        [
            *(rows.column(name) for name in ("email", "fingerprint", "status", "contact_id")),
            *(column.take(match) for column in seen_columns),
        ],
        names=["email", "fingerprint", "status", "contact_id", "m_contact_id", "m_member", "m_unsub"],
    )
    matched = match.drop_null()
    unknown = seen
    if len(matched):
        positions = pa.array(range(seen.num_rows), matched.type)
        unknown = seen.filter(pc.invert(pc.is_in(positions, value_set=matched)))
    count = unknown.num_rows
    others = pa.table(
        [
            unknown.column("email"),
            pa.nulls(count, known.schema.field("fingerprint").type),
            pa.nulls(count, known.schema.field("status").type),
            pa.nulls(count, known.schema.field("contact_id").type),
            unknown.column("m_contact_id"),
            unknown.column("m_member"),
            unknown.column("m_unsub"),
        ],
        schema=known.schema,
    )
    return pa.concat_tables([known, others])


def _count(mask: pa.Array | pa.ChunkedArray) -> int:
    return int(pc.sum(pc.cast(mask, pa.int64())).as_py() or 0)


class ChangeReader:
    """Reads what changed for the state's lists, as cheaply as can be trusted (see the module doc)."""

    def __init__(self, hook: ConstantContactHook, log: logging.Logger | Any) -> None:
        self.hook = hook
        self.log = log
        self.requests = 0

    # ------------------------------------------------------------------------------ activities
    def settle_pending(self, state: ExportState) -> tuple[ExportState, pa.Table]:
        """Confirm (or not) the activities of a run that did not wait; the memberships being removed.

        All completed: ``sent`` rows become members and ``removing`` rows are dropped (removed by
        the export). Otherwise (failed, still running, or expired after 10 days) ``sent`` rows stay
        unconfirmed (re-sent unless they left) and ``removing`` rows count as members whose
        absence, if found, is the export's doing (returned as journal rows: list_id, email).
        """
        table = state.table
        pending = state.meta.pending_activity_ids
        confirmed = bool(pending) and all(self._completed(activity_id) for activity_id in pending)
        removing = pc.equal(table.column("status"), REMOVING)
        journal = journal_rows(table.filter(removing))
        if confirmed:
            table = table.filter(pc.invert(removing))
        status = table.column("status")
        status = pc.if_else(pc.equal(status, REMOVING), pa.scalar(MEMBER, pa.int8()), status)
        after = MEMBER if confirmed else SENT
        status = pc.if_else(
            pc.is_in(status, value_set=pa.array([SENT, IMPORTING], pa.int8())),
            pa.scalar(after, pa.int8()),
            status,
        )
        table = table.set_column(table.schema.get_field_index("status"), "status", status)
        if pending:
            self.log.info(
                "The previous run's %d activities %s",
                len(pending),
                "completed: its imports are confirmed"
                if confirmed
                else "are not all completed: its imports will be sent again",
            )
        return ExportState(table, replace(state.meta, pending_activity_ids=[])), journal

    def _completed(self, activity_id: str) -> bool:
        self.requests += 1
        try:
            activity = self.hook.get_activity(activity_id)
        except ConstantContactNotFoundError:  # older than 10 days: the outcome cannot be known
            return False
        return activity.get("state") == "completed"

    # -------------------------------------------------------------------------------- listings
    def read_list(self, list_id: str) -> tuple[pa.Table, str | None]:
        """Every member of ``list_id`` (email, contact id, unsubscribed); the latest updated_at."""
        started = time.monotonic()
        pages: list[pa.Table] = []
        latest: str | None = None
        requests = members = 0
        for page in self.hook.iter_contact_pages(list_id, limit=MAX_PAGE_SIZE):
            requests += 1
            members += len(page)
            if page:
                table, page_latest = _page_table(page, None)
                pages.append(table)
                latest = _later(latest, page_latest)
            if requests % PROGRESS_EVERY_PAGES == 0:
                self.log.info(
                    "Reading the members of list %s: %d so far in %d requests (%.0fs)",
                    list_id,
                    members,
                    requests,
                    time.monotonic() - started,
                )
        self.requests += requests
        listing = pa.concat_tables(pages) if pages else _PAGE_SCHEMA.empty_table()
        self.log.info(
            "List %s has %d members (read in full: %d requests, %.1fs)",
            list_id,
            members,
            requests,
            time.monotonic() - started,
        )
        return listing, latest

    def membership_counts(self, list_ids: Iterable[str]) -> dict[str, int]:
        """List id -> membership_count, for the wanted lists (one pass over the account's lists)."""
        wanted = set(list_ids)
        counts: dict[str, int] = {}
        seen = 0
        for item in self.hook.iter_contact_lists(include_membership_count=True):
            seen += 1
            if item.get("list_id") in wanted and item.get("membership_count") is not None:
                counts[item["list_id"]] = int(item["membership_count"])
        self.requests += seen // MAX_PAGE_SIZE + 1
        return counts

    def changed_contacts(
        self, since: str, list_ids: Sequence[str], own_changes: list[str] | None
    ) -> tuple[dict[str, pa.Table], str | None]:
        """Contacts updated or opted out since ``since``, per list (member or not); the latest updated_at.

        ``own_changes`` ([start, end]): the window of the export's own last imports and removals,
        left out of the ``updated_after`` query (they would come back as a million changes after
        a full run); someone else's change inside it is caught by the count check.
        """
        windows: list[dict[str, str]] = [{"updated_after": since}]
        end = own_changes[1] if own_changes and len(own_changes) == 2 else None
        begin = _parse_time(own_changes[0]) if own_changes and len(own_changes) == 2 else None
        finish = _parse_time(end)
        if begin is not None and finish is not None and begin <= finish:
            after = _parse_time(since)
            assert after is not None
            # One second past the end: whether updated_after is inclusive is not documented.
            windows = [{"updated_after": _iso(max(after, finish + timedelta(seconds=1)))}]
            if after < begin:
                windows.insert(0, {"updated_after": since, "updated_before": _iso(begin)})
        tables: dict[str, list[pa.Table]] = {list_id: [] for list_id in list_ids}
        latest: str | None = None
        queries = [*windows, {"optout_after": since}]
        for filters in queries:
            pages = self.hook.iter_contact_pages(
                None, status="all", limit=MAX_PAGE_SIZE, include=("list_memberships",), **filters
            )
            for page in pages:
                self.requests += 1
                for list_id in list_ids:
                    table, page_latest = _page_table(page, list_id)
                    tables[list_id].append(table)
                    latest = _later(latest, page_latest)
        empty = _PAGE_SCHEMA.empty_table()
        changes = {list_id: pa.concat_tables(parts) if parts else empty for list_id, parts in tables.items()}
        return changes, _later(latest, end if begin is not None and finish is not None else None)


def check_changes(
    hook: ConstantContactHook,
    state: ExportState,
    list_ids: Sequence[str],
    *,
    full_refresh: bool,
    mirror_hashes: pa.Array | None,
    journal: pa.Table,
    log: logging.Logger | Any,
) -> ChangeCheck:
    """Bring ``state`` up to date with Constant Contact for ``list_ids``; read in full where needed.

    ``mirror_hashes`` (mirror mode): the segment's email hashes: a list whose removal candidates
    lack a contact id is read in full (removals take contact ids). ``journal``: emails a killed
    or unconfirmed run was removing.
    """
    reader = ChangeReader(hook, log)
    state, pending_journal = reader.settle_pending(state)
    journal = pa.concat_tables([journal, pending_journal])
    meta = state.meta
    written = _parse_time(meta.written_at)
    too_old = written is None or _now() - written > MAX_STATE_AGE
    full: dict[str, str] = {}
    for list_id in list_ids:
        if full_refresh:
            full[list_id] = "full_refresh"
        elif too_old:
            full[list_id] = "state older than 10 days" if written else "first run"
        elif meta.watermark is None or list_id not in meta.members_expected:
            full[list_id] = "no earlier reading of the list"
    watermark = meta.watermark
    rows = {list_id: state.for_list(list_id) for list_id in list_ids}
    # From here on the rows per list stand for the state: each is replaced by its reconciled rows,
    # and the rows read go as soon as nothing refers to them.
    state = ExportState(state.table.schema.empty_table(), meta)
    result = ChangeCheck(state)
    cheap = [list_id for list_id in list_ids if list_id not in full]
    if cheap:
        counts = reader.membership_counts(cheap)
        since = _parse_time(meta.watermark)
        assert since is not None
        changes, latest = reader.changed_contacts(_iso(since - WATERMARK_MARGIN), cheap, meta.own_changes)
        watermark = _later(watermark, latest)
        for list_id in cheap:
            new_rows, found = reconcile(
                rows[list_id], changes[list_id], _journal_of(journal, list_id), complete=False
            )
            low, high = meta.members_expected[list_id]
            predicted_low = low + found["joined"] - found["departed"] - found["unsubscribed"]
            predicted_high = high + found["joined"] - found["departed"]
            count = counts.get(list_id)
            if count is None or not predicted_low <= count <= predicted_high:
                full[list_id] = (
                    f"membership_count {count} is not {predicted_low}..{predicted_high} as the state predicts"
                )
                continue
            if mirror_hashes is not None and _removals_lack_ids(new_rows, mirror_hashes):
                full[list_id] = "a member to remove has no known contact id"
                continue
            rows[list_id] = new_rows
            result.lists[list_id] = ListCheck(
                list_id,
                "incremental",
                count,
                None,
                found["left"],
                found["unsubscribed"],
                found["joined"],
                found["removed_by_export"],
            )
    for list_id, reason in full.items():
        log.info("Reading list %s in full: %s", list_id, reason)
        listing, latest = reader.read_list(list_id)
        watermark = _later(watermark, latest)
        new_rows, found = reconcile(rows[list_id], listing, _journal_of(journal, list_id), complete=True)
        rows[list_id] = new_rows
        result.lists[list_id] = ListCheck(
            list_id,
            "full",
            listing.num_rows,
            listing,
            found["left"],
            found["unsubscribed"],
            found["joined"],
            found["removed_by_export"],
            reason,
        )
    table = pa.concat_tables([state_table(list_id, rows[list_id]) for list_id in list_ids])
    result.state = ExportState(table, state.meta)
    result.requests = reader.requests
    result.watermark = watermark
    return result


def _removals_lack_ids(rows: pa.Table, segment_hashes: pa.Array) -> bool:
    """Whether some member to remove (in the state as a member, not in the segment) has no contact id."""
    current = pc.is_in(rows.column("status"), value_set=pa.array([MEMBER, SENT], pa.int8()))
    if not pc.any(current).as_py():
        return False
    # Hashed where they are: no copy of a million members' rows.
    leaving = pc.invert(pc.is_in(chunk_email_hashes(rows.column("email")), value_set=segment_hashes))
    return bool(pc.any(pc.and_(pc.and_(current, leaving), pc.is_null(rows.column("contact_id")))).as_py())


JOURNAL_SCHEMA = pa.schema([pa.field("list_id", pa.string()), pa.field("email", pa.string())])


def journal_rows(table: pa.Table) -> pa.Table:
    """(list_id, email) of state rows (e.g. the ``removing`` ones of a journal)."""
    return pa.table(
        [table.column("list_id").cast(pa.string()), table.column("email").cast(pa.string())],
        schema=JOURNAL_SCHEMA,
    )


def _journal_of(journal: pa.Table, list_id: str) -> pa.Array:
    return journal.filter(pc.equal(journal.column("list_id"), list_id)).column("email").combine_chunks()
