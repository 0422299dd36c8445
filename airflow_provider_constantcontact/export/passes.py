"""The export's two passes over the segment: classify every row (pass one), encode and batch (pass two).

Pass one reads every mapped column, classifies every row and finds the duplicates, so the number
of contacts is known, and checked, before anything is sent. Pass two reads the columns again,
encodes each valid contact's JSON, cuts request bodies of at most 4 MB and 40,000 contacts and
writes the rows not sent to the rejects file. What pass one found reaches pass two as a
:class:`SegmentScan` value.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from airflow_provider_constantcontact.constants import MAX_IMPORT_BODY_BYTES, MAX_IMPORT_CONTACTS
from airflow_provider_constantcontact.exceptions import ConstantContactExportError
from airflow_provider_constantcontact.export import cleaning
from airflow_provider_constantcontact.export.batches import BodyBatcher, ImportBody
from airflow_provider_constantcontact.export.dedup import EmailDeduplicator, email_hashes
from airflow_provider_constantcontact.export.delta import (
    KEPT_LEFT,
    KEPT_UNCHANGED,
    KEPT_UNSUBSCRIBED,
    SyncPlan,
)
from airflow_provider_constantcontact.export.encoding import contact_json
from airflow_provider_constantcontact.export.fields import (
    DUPLICATE,
    EMAIL_TOO_LONG,
    INVALID_EMAIL,
    LEFT_LIST,
    OK,
    UNSUBSCRIBED,
    ContactPlan,
)
from airflow_provider_constantcontact.export.reader import SegmentReader
from airflow_provider_constantcontact.export.rejects import RejectsWriter
from airflow_provider_constantcontact.export.settings import ExportSettings
from airflow_provider_constantcontact.export.state import fingerprints

_FINGERPRINTED = pa.schema(
    [pa.field("row", pa.uint32()), pa.field("email", pa.string()), pa.field("fingerprint", pa.int64())]
)


@dataclass
class SegmentScan:
    """What pass one found, handed to pass two: per-row codes, duplicate flags and counts."""

    codes: pa.ChunkedArray
    #: uint8 per row: 1 for a later occurrence of an earlier row's email.
    duplicate_mask: pa.Array
    rows_read: int
    duplicates: int
    #: Reject reason -> rows (not duplicates).
    rejected: dict[str, int]
    #: Valid, distinct contacts: what pass two sends.
    contacts: int
    #: With ``keep_email_hashes`` (mirror mode): the hash (int64) of every normalised email of
    #: the segment's rows, valid or not; else None.
    email_hashes: pa.Array | None
    #: With ``fingerprint`` (export state): one row per valid distinct contact, in row order:
    #: ``row`` (uint32), ``email`` (normalised), ``fingerprint`` (of the JSON object sent); else None.
    fingerprinted: pa.Table | None = None

    def take_fingerprinted(self) -> pa.Table:
        """The fingerprinted contacts, handed over (no longer held here: pass two does not need them)."""
        table, self.fingerprinted = self.fingerprinted, None
        return table if table is not None else _FINGERPRINTED.empty_table()


def scan_segment(
    reader: SegmentReader,
    plan: ContactPlan,
    log: logging.Logger | Any,
    *,
    keep_email_hashes: bool = False,
    fingerprint: bool = False,
) -> SegmentScan:
    """Pass one: reason code of every row, duplicates, counts; nothing is sent.

    With ``fingerprint`` each valid row is also encoded and its JSON fingerprinted, so that a
    run with state knows what changed before pass two sends anything.
    """
    started = time.monotonic()
    dedup = EmailDeduplicator()
    codes: list[pa.Array] = []
    hashes: list[pa.Array] = []
    fingerprinted: list[pa.Table] = []
    counts: dict[str, int] = {}
    samples: dict[str, str] = {}
    rows = 0
    for batch in reader.batches(plan.columns):
        batch_codes, emails = cleaning.classify(batch, plan)
        present = pc.is_valid(emails)
        batch_hashes = email_hashes(emails.filter(present))
        valid = pc.equal(batch_codes, OK).filter(present)  # every valid row has an email
        rows_present = reader.row_numbers(rows, batch.num_rows).filter(present)
        dedup.add(batch_hashes.filter(valid), rows_present.filter(valid))
        if keep_email_hashes:
            hashes.append(batch_hashes)
        if fingerprint:
            ok = pc.equal(batch_codes, OK)
            encoded = contact_json(batch.filter(ok), plan, {})
            fingerprinted.append(
                pa.table(
                    {
                        "row": reader.row_numbers(rows, batch.num_rows).filter(ok),
                        "email": emails.filter(ok),
                        "fingerprint": fingerprints(encoded),
                    }
                )
            )
        cleaning.merge_counts(counts, cleaning.count_codes(batch_codes, plan.reasons).items())
        _sample(samples, plan, batch_codes, emails)
        codes.append(batch_codes)
        rows += batch.num_rows
    if rows >= 2**32:
        raise ValueError("The segment has more than 4,294,967,295 rows; split it into several exports")
    duplicate_mask, duplicates = dedup.duplicate_mask(rows)
    valid = counts.pop("", 0)
    distinct = None
    if fingerprint:
        distinct = pa.concat_tables(fingerprinted) if fingerprinted else _FINGERPRINTED.empty_table()
        if duplicates:  # else no copy of a million rows
            distinct = distinct.filter(pc.equal(duplicate_mask.take(distinct.column("row")), 0))
    scan = SegmentScan(
        codes=pa.chunked_array(codes, pa.int8()),
        duplicate_mask=duplicate_mask,
        rows_read=rows,
        duplicates=duplicates,
        rejected=counts,
        contacts=valid - duplicates,
        email_hashes=(pa.concat_arrays(hashes) if hashes else pa.array([], pa.int64()))
        if keep_email_hashes
        else None,
        fingerprinted=distinct,
    )
    log.info(
        "Read %d rows from %d file(s) in %.2fs: %d contacts, %d duplicates, rejected %s",
        rows,
        len(reader.source.files),
        time.monotonic() - started,
        scan.contacts,
        duplicates,
        counts or "none",
    )
    if samples:
        log.info("Masked samples of rejected emails: %s", samples)
    return scan


def _sample(samples: dict[str, str], plan: ContactPlan, codes: pa.Array, emails: pa.Array) -> None:
    """Remember one masked email per email reject reason, for the log."""
    for code in (INVALID_EMAIL, EMAIL_TOO_LONG):
        reason = plan.reasons[code]
        if reason in samples:
            continue
        index = pc.index(codes, pa.scalar(code, pa.int8())).as_py()
        if index >= 0:
            samples[reason] = cleaning.mask_email(emails[index].as_py())


def encode_bodies(
    reader: SegmentReader,
    scan: SegmentScan,
    settings: ExportSettings,
    list_ids: list[str],
    rejects: RejectsWriter | None,
    truncated: dict[str, int],
    sync: SyncPlan | None = None,
) -> Iterator[ImportBody]:
    """Pass two: the request bodies, in order; the rows not sent go to ``rejects``.

    Every row not sent goes to the rejects file, duplicates included, so that each input row is
    either sent or visible there with its reason. ``truncated`` is increased by the number of
    values each free-text field had to shorten. With ``sync`` (export state) only the rows it
    sends are encoded, each in a body for its set of lists; unchanged rows are skipped (not
    rejects) and rows kept out of their lists go to the rejects file as ``left_list`` or
    ``unsubscribed``.
    """
    plan = settings.plan
    reader.source.check_unchanged()
    batchers: dict[int, BodyBatcher] = {}
    reasons = pa.array(plan.reasons, pa.string())
    offset = 0
    encoded = 0
    for batch in reader.batches(plan.columns):
        length = batch.num_rows
        codes = scan.codes.slice(offset, length).combine_chunks()
        duplicate = pc.equal(scan.duplicate_mask.slice(offset, length), 1)
        codes = pc.if_else(duplicate, pa.scalar(DUPLICATE, pa.int8()), codes)
        masks = None
        if sync is not None:
            masks = sync.masks.slice(offset, length)
            kept = sync.kept.slice(offset, length)
            codes = pc.if_else(pc.equal(kept, KEPT_LEFT), pa.scalar(LEFT_LIST, pa.int8()), codes)
            codes = pc.if_else(pc.equal(kept, KEPT_UNSUBSCRIBED), pa.scalar(UNSUBSCRIBED, pa.int8()), codes)
            encoded += _count_true(pc.equal(kept, KEPT_UNCHANGED))
        offset += length
        keep = pc.equal(codes, OK) if masks is None else pc.not_equal(masks, 0)
        if rejects is not None:
            not_sent = pc.invert(pc.equal(codes, OK)) if masks is None else pc.not_equal(codes, OK)
            if pc.any(not_sent).as_py():
                rejects.write_rejects(batch.filter(not_sent), reasons.take(codes.filter(not_sent)))
        contacts = batch.filter(keep)
        if not contacts.num_rows:
            continue
        encoded += contacts.num_rows
        objects = contact_json(contacts, plan, truncated)
        if masks is None:
            groups = {0: objects}
        else:
            chosen = masks.filter(keep)
            groups = {
                mask: objects.filter(pc.equal(chosen, pa.scalar(mask, chosen.type)))
                for mask in pc.unique(chosen).to_pylist()
            }
        for mask, group in groups.items():
            batcher = batchers.get(mask)
            if batcher is None:
                targets = list_ids if masks is None else [i for n, i in enumerate(list_ids) if mask >> n & 1]
                batcher = batchers[mask] = BodyBatcher(
                    targets, max_bytes=MAX_IMPORT_BODY_BYTES, max_contacts=MAX_IMPORT_CONTACTS
                )
            yield from batcher.add(group)
    for batcher in batchers.values():
        yield from batcher.flush()
    if offset != scan.rows_read or encoded != scan.contacts - _kept_rows(sync):
        raise ConstantContactExportError(
            f"The second pass read {offset:,} rows and encoded {encoded:,} contacts, the first "
            f"{scan.rows_read:,} rows and {scan.contacts:,} contacts: did the segment change while it "
            "was read? Run the export again once whatever writes it has finished."
        )


def _count_true(mask: pa.Array) -> int:
    return int(pc.sum(pc.cast(mask, pa.int64())).as_py() or 0)


def _kept_rows(sync: SyncPlan | None) -> int:
    """Valid distinct rows a run with state keeps out of every list (left or unsubscribed)."""
    if sync is None:
        return 0
    return _count_true(pc.is_in(sync.kept, value_set=pa.array([KEPT_LEFT, KEPT_UNSUBSCRIBED], pa.int8())))
