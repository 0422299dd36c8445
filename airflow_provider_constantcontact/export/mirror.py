"""Mirror mode: after the import, remove from each list the members who are not in the segment.

A member is "in the segment" when some selected row has its email, compared the way the export
normalises emails (trimmed, ASCII lower-cased), whether or not that row was sent: a row rejected
for another field (a phone number too long) keeps its contact on the list. Members are read with
the contacts listing (``GET /contacts?lists=<id>``, 500 a page: members / 500 requests), their
emails hashed and compared with the segment's hashes in one Arrow set lookup per list. Memory
per member is a few dozen bytes of Arrow buffers (contact id, email, hash), no Python object.

The removal guard runs after every list was read and before anything changes: when any list
would lose more than ``max_removal_ratio`` of its members, or the segment has no valid contact
at all, nothing is imported or removed for any list. Removal takes contact ids, at most 500 a
request, and never deletes a contact; each request's memberships can be journaled before it is
sent (:mod:`.journal`). See docs/export-operator.md "Mirror mode".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from airflow_provider_constantcontact.constants import MAX_CONTACT_IDS_PER_REMOVAL, MAX_PAGE_SIZE
from airflow_provider_constantcontact.exceptions import ConstantContactExportError
from airflow_provider_constantcontact.export.cleaning import normalize_emails
from airflow_provider_constantcontact.export.dedup import email_hashes
from airflow_provider_constantcontact.export.journal import REMOVALS_SCHEMA, RemovalJournal, removal_rows
from airflow_provider_constantcontact.export.rejects import ParquetOutput

if TYPE_CHECKING:
    from airflow_provider_constantcontact.hooks.constantcontact import ConstantContactHook

#: Log the listing's progress every this many pages (20 pages: 10,000 members, ~5 s at 4/s).
PROGRESS_EVERY_PAGES = 20


@dataclass(frozen=True)
class ListRemovals:
    """One list's members before the run and those to remove (contact ids and emails, in order)."""

    list_id: str
    members_before: int
    contact_ids: pa.Array
    emails: pa.Array

    @property
    def count(self) -> int:
        return len(self.contact_ids)


def read_removals(
    hook: ConstantContactHook,
    list_id: str,
    segment_hashes: pa.Array,
    log: logging.Logger | Any,
) -> tuple[ListRemovals, int]:
    """Read every member of ``list_id``; those whose email is not in the segment; and the requests made.

    ``segment_hashes`` are the hashes of every normalised email of the segment's selected rows.
    """
    started = time.monotonic()
    ids: list[pa.Array] = []
    emails: list[pa.Array] = []
    hashes: list[pa.Array] = []
    requests = members = 0
    for page in hook.iter_contact_pages(list_id, limit=MAX_PAGE_SIZE):
        requests += 1
        members += len(page)
        if page:
            page_emails = pa.array(
                [(contact.get("email_address") or {}).get("address") for contact in page], pa.string()
            )
            ids.append(pa.array([contact.get("contact_id") for contact in page], pa.string()))
            emails.append(page_emails)
            hashes.append(_member_hashes(page_emails))
        if requests % PROGRESS_EVERY_PAGES == 0:
            log.info(
                "Reading the members of list %s: %d so far in %d requests (%.0fs)",
                list_id,
                members,
                requests,
                time.monotonic() - started,
            )
    # One set lookup for the whole list: its hash table is built once, not once a page.
    leave = pc.invert(pc.is_in(_concat(hashes, pa.int64()), value_set=segment_hashes))
    log.info(
        "List %s has %d members (%d requests, %.1fs); %d are not in the segment",
        list_id,
        members,
        requests,
        time.monotonic() - started,
        pc.sum(leave).as_py() or 0,
    )
    all_ids, all_emails = _concat(ids, pa.string()), _concat(emails, pa.string())
    return ListRemovals(list_id, members, all_ids.filter(leave), all_emails.filter(leave)), requests


def _member_hashes(emails: pa.Array) -> pa.Array:
    """The hash of each member's normalised email, one page at a time (no Python object outlives it).

    A member without an email (an SMS-only contact) gets the hash of ``""``, which no segment
    email has (an empty email is no email): it is in no segment of emails, and leaves.
    """
    return email_hashes(pc.fill_null(normalize_emails(emails), ""))


def _concat(chunks: list[pa.Array], data_type: pa.DataType) -> pa.Array:
    return pa.concat_arrays(chunks) if chunks else pa.array([], data_type)


def check_removal_guard(removals: Sequence[ListRemovals], *, max_removal_ratio: float, contacts: int) -> None:
    """Refuse, before any change to any list, removals over the ratio or an empty segment emptying a list."""
    empty_segment, over_ratio = [], []
    for plan in removals:
        if not plan.count:
            continue
        ratio = plan.count / plan.members_before
        if contacts == 0:
            empty_segment.append(
                f"list {plan.list_id}: {plan.count:,} of its {plan.members_before:,} members ({ratio:.1%})"
            )
        elif ratio > max_removal_ratio:
            over_ratio.append(
                f"list {plan.list_id}: {plan.count:,} of its {plan.members_before:,} members "
                f"({ratio:.1%}) would be removed, more than max_removal_ratio={max_removal_ratio:g}"
            )
    problems = []
    if empty_segment:
        problems.append(
            "the segment has no valid contact, so mirroring would remove "
            + "; ".join(empty_segment)
            + ". A segment without a valid contact never removes anyone, whatever max_removal_ratio: "
            "check the source, segment_column/segments and the email column (the summary's rejected "
            "counts say why rows were not valid)"
        )
    if over_ratio:
        problems.append(
            "; ".join(over_ratio) + ". If the segment is right, raise max_removal_ratio "
            "(1.0 turns the ratio check off) and run again; otherwise fix the segment"
        )
    if problems:
        raise ConstantContactExportError(
            "Mirror removal guard: "
            + " Also: ".join(problems)
            + ". Nothing was imported or removed for any list."
        )


def send_removals(
    hook: ConstantContactHook | None,
    removals: Sequence[ListRemovals],
    log: logging.Logger | Any,
    *,
    before_request: Callable[[str, pa.Array, pa.Array], None] | None = None,
) -> list[str]:
    """Remove the memberships, 500 contact ids a request (``hook`` None: plan only); the activity ids.

    ``before_request(list_id, contact_ids, emails)`` is called with each request's memberships
    before it is sent (:meth:`.journal.RemovalJournal.record`): a failure there sends nothing more.
    """
    activity_ids: list[str] = []
    for plan in removals:
        if hook is None or not plan.count:
            continue
        for start in range(0, plan.count, MAX_CONTACT_IDS_PER_REMOVAL):
            chunk = plan.contact_ids.slice(start, MAX_CONTACT_IDS_PER_REMOVAL)
            if before_request is not None:
                before_request(plan.list_id, chunk, plan.emails.slice(start, MAX_CONTACT_IDS_PER_REMOVAL))
            activity = hook.remove_list_memberships(chunk.to_pylist(), [plan.list_id])
            activity_ids.append(activity["activity_id"])
        requests = -(-plan.count // MAX_CONTACT_IDS_PER_REMOVAL)
        log.info("Removing %d members from list %s (%d requests)", plan.count, plan.list_id, requests)
    return activity_ids


def write_removals(
    path: str, removals: Sequence[ListRemovals], conn_id: str | None, journal: RemovalJournal | None = None
) -> int:
    """Write the removals file: one Parquet row per removed membership; the rows written.

    With ``journal`` (a run that sent its removals): every journaled membership, this run's and
    those earlier runs left, after which those entries are deleted. Without (planning only): the
    memberships of ``removals``, to be removed.
    """
    output = ParquetOutput(path, REMOVALS_SCHEMA, conn_id=conn_id)
    try:
        if journal is None:
            for plan in removals:
                output.write(removal_rows(plan.list_id, plan.contact_ids, plan.emails, None))
        else:
            for batch in journal.read([*journal.earlier, *journal.written]).to_batches():
                output.write(batch)
    except BaseException:
        output.abort()
        raise
    output.close()
    if journal is not None:
        journal.delete([*journal.earlier, *journal.written])
    return output.rows
