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
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from airflow_provider_constantcontact.constants import MAX_PAGE_SIZE
from airflow_provider_constantcontact.exceptions import ConstantContactNotFoundError
from airflow_provider_constantcontact.export import lookup
from airflow_provider_constantcontact.export.cleaning import normalize_emails
from airflow_provider_constantcontact.export.contact_ids import ContactIdFiles, IdFile, ListingSpill
from airflow_provider_constantcontact.export.dedup import chunk_email_hashes
from airflow_provider_constantcontact.export.mirror import ListRemovals
from airflow_provider_constantcontact.export.reconcile import reconcile
from airflow_provider_constantcontact.export.state import (
    FILE_ROW,
    IMPORTING,
    MEMBER,
    REMOVING,
    SENT,
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
#: A full listing's pages are joined into one Arrow chunk every this many pages (50,000 members).
PAGES_PER_CHUNK = 100

_PAGE_SCHEMA = pa.schema(
    [
        pa.field("email", pa.string()),
        pa.field("m_contact_id", pa.string()),
        pa.field("m_member", pa.bool_()),
        pa.field("m_unsub", pa.bool_()),
    ]
)
#: A full listing: the contact ids spilled to a file, their rows there instead (:mod:`.contact_ids`).
_LISTING_SCHEMA = pa.schema(
    [
        pa.field("email", pa.string()),
        pa.field("m_file_row", pa.uint32()),
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
    #: Mirror mode, after a full read: the listed members not in the segment (the listing itself
    #: is not kept). None: the removals come from the state rows.
    removals: ListRemovals | None = None
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
    #: A local temporary folder with the full listings' contact ids (the state's ``source``
    #: refers to them until the journal is written); :meth:`remove_spills` deletes it.
    spill_directory: str | None = None

    def remove_spills(self) -> None:
        if self.spill_directory is not None:
            shutil.rmtree(self.spill_directory, ignore_errors=True)
            self.spill_directory = None


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


class ChangeReader:
    """Reads what changed for the state's lists, as cheaply as can be trusted (see the module doc)."""

    def __init__(
        self,
        hook: ConstantContactHook,
        log: logging.Logger | Any,
        before_full_listing: Callable[[], None] | None = None,
    ) -> None:
        self.hook = hook
        self.log = log
        self.before_full_listing = before_full_listing
        self.requests = 0
        #: Where full listings spill their contact ids (made at the first one).
        self.spill_directory: str | None = None

    @contextmanager
    def spills_removed_on_error(self) -> Iterator[None]:
        """Delete the spilled contact ids if reading the changes fails (else the check owns them)."""
        try:
            yield
        except BaseException:
            if self.spill_directory is not None:
                shutil.rmtree(self.spill_directory, ignore_errors=True)
            raise

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
        return replace(state, table=table, meta=replace(state.meta, pending_activity_ids=[])), journal

    def _completed(self, activity_id: str) -> bool:
        self.requests += 1
        try:
            activity = self.hook.get_activity(activity_id)
        except ConstantContactNotFoundError:  # older than 10 days: the outcome cannot be known
            return False
        return activity.get("state") == "completed"

    # -------------------------------------------------------------------------------- listings
    def read_list(self, list_id: str, *, first_row: int) -> tuple[pa.Table, str | None, IdFile]:
        """Every member of ``list_id`` (email, file row of its contact id, member, unsubscribed);
        the latest updated_at; the file the contact ids were spilled to (file rows ``first_row``
        onwards: 40 MB a million members, that stay out of memory)."""
        if self.before_full_listing is not None:
            self.before_full_listing()
        started = time.monotonic()
        if self.spill_directory is None:
            self.spill_directory = tempfile.mkdtemp(prefix="constantcontact-listing-")
        spill = ListingSpill(self.spill_directory, list_id, first_row)
        chunks: list[pa.Table] = []
        pages: list[pa.Table] = []
        latest: str | None = None
        requests = members = 0

        def spilled(pages: list[pa.Table]) -> pa.Table:
            chunk = pa.concat_tables(pages).combine_chunks()
            rows = spill.add(chunk.column("m_contact_id"))
            return chunk.drop_columns(["m_contact_id"]).add_column(1, "m_file_row", rows)

        for page in self.hook.iter_contact_pages(list_id, limit=MAX_PAGE_SIZE):
            requests += 1
            members += len(page)
            if page:
                table, page_latest = _page_table(page, None)
                pages.append(table)
                latest = _later(latest, page_latest)
            if len(pages) == PAGES_PER_CHUNK:  # a few large chunks, not 2,000 small ones
                chunks.append(spilled(pages))
                pages = []
            if requests % PROGRESS_EVERY_PAGES == 0:
                self.log.info(
                    "Reading the members of list %s: %d so far in %d requests (%.0fs)",
                    list_id,
                    members,
                    requests,
                    time.monotonic() - started,
                )
        self.requests += requests
        if pages:
            chunks.append(spilled(pages))
        listing = pa.concat_tables(chunks) if chunks else _LISTING_SCHEMA.empty_table()
        self.log.info(
            "List %s has %d members (read in full: %d requests, %.1fs)",
            list_id,
            members,
            requests,
            time.monotonic() - started,
        )
        return listing, latest, spill.close()

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
    before_full_listing: Callable[[], None] | None = None,
) -> ChangeCheck:
    """Bring ``state`` up to date with Constant Contact for ``list_ids``; read in full where needed.

    ``mirror_hashes`` (mirror mode): the segment's email hashes: a list whose removal candidates
    lack a contact id is read in full (removals take contact ids). ``journal``: emails a killed
    or unconfirmed run was removing. ``before_full_listing`` is called before a list is read in
    full (the caller makes room in memory).
    """
    reader = ChangeReader(hook, log, before_full_listing)
    with reader.spills_removed_on_error():
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
        state = state.with_table(state.table.schema.empty_table())
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
                        f"membership_count {count} is not {predicted_low}..{predicted_high} "
                        "as the state predicts"
                    )
                    continue
                removals = None
                if mirror_hashes is not None:
                    removals = _state_removals(list_id, new_rows, count, mirror_hashes, state.source)
                    if removals.contact_ids.null_count:
                        full[list_id] = "a member to remove has no known contact id"
                        continue
                rows[list_id] = new_rows
                result.lists[list_id] = ListCheck(
                    list_id,
                    "incremental",
                    count,
                    removals,
                    found["left"],
                    found["unsubscribed"],
                    found["joined"],
                    found["removed_by_export"],
                )
        for list_id, reason in full.items():
            log.info("Reading list %s in full: %s", list_id, reason)
            listing, latest, spilled = reader.read_list(list_id, first_row=state.source.next_row)
            state = replace(state, source=state.source.with_file(spilled))
            watermark = _later(watermark, latest)
            removals = None
            if mirror_hashes is not None:
                removals = _listed_removals(list_id, listing, mirror_hashes, state.source)
            new_rows, found = reconcile(rows[list_id], listing, _journal_of(journal, list_id), complete=True)
            members = listing.num_rows
            del listing  # only the state rows and the removals are needed from here on
            rows[list_id] = new_rows
            result.lists[list_id] = ListCheck(
                list_id,
                "full",
                members,
                removals,
                found["left"],
                found["unsubscribed"],
                found["joined"],
                found["removed_by_export"],
                reason,
            )
        table = pa.concat_tables([state_table(list_id, rows[list_id]) for list_id in list_ids])
        result.state = state.with_table(table)
        result.requests = reader.requests
        result.watermark = watermark
        result.spill_directory = reader.spill_directory
        return result


def _listed_removals(
    list_id: str, listing: pa.Table, segment_hashes: pa.Array, source: ContactIdFiles
) -> ListRemovals:
    """The members of a full listing whose email is in no row of the segment (mirror mode);
    their contact ids read back from the listing's spill."""
    # Hashed where they are: only the leavers are copied.
    leave = pc.invert(lookup.is_in(chunk_email_hashes(listing.column("email")), segment_hashes))
    with source.reader() as ids_at:
        contact_ids = ids_at(listing.column("m_file_row").filter(leave))
    emails = listing.column("email").filter(leave).combine_chunks()
    return ListRemovals(list_id, listing.num_rows, contact_ids, emails)


def _state_removals(
    list_id: str, rows: pa.Table, members: int, segment_hashes: pa.Array, source: ContactIdFiles
) -> ListRemovals:
    """The state's members of a list (cheaply checked) whose email is in no row of the segment;
    their contact ids read from the state file (``source``) where they are still there."""
    current = pc.is_in(rows.column("status"), value_set=pa.array([MEMBER, SENT], pa.int8()))
    leave = pc.invert(lookup.is_in(chunk_email_hashes(rows.column("email")), segment_hashes))
    leave = pc.and_(current, leave)
    contact_ids = rows.column("contact_id").filter(leave).combine_chunks()
    if source.files and FILE_ROW in rows.column_names and contact_ids.null_count:
        with source.reader() as ids_at:
            contact_ids = pc.coalesce(contact_ids, ids_at(rows.column(FILE_ROW).filter(leave)))
    return ListRemovals(list_id, members, contact_ids, rows.column("email").filter(leave).combine_chunks())


JOURNAL_SCHEMA = pa.schema([pa.field("list_id", pa.string()), pa.field("email", pa.string())])


def journal_rows(table: pa.Table) -> pa.Table:
    """(list_id, email) of state rows (e.g. the ``removing`` ones of a journal)."""
    return pa.table(
        [table.column("list_id").cast(pa.string()), table.column("email").cast(pa.string())],
        schema=JOURNAL_SCHEMA,
    )


def _journal_of(journal: pa.Table, list_id: str) -> pa.Array:
    return journal.filter(pc.equal(journal.column("list_id"), list_id)).column("email").combine_chunks()
