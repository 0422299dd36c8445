"""The two-pass export of one segment into Constant Contact lists.

Pass one (:func:`scan_segment`) reads every mapped column, classifies every row and finds the
duplicates, so the number of contacts is known, and checked against ``max_contacts``, before
anything is sent. Pass two (:func:`encode_bodies`) reads the columns again, encodes each valid
contact's JSON with Arrow string kernels, cuts request bodies of at most 4 MB and 40,000
contacts and writes the rows not sent to the rejects file; :class:`SegmentExport` posts the
bodies through the hook while the next one is built. Nothing here knows about Airflow tasks:
the operator builds :class:`ExportSettings` and runs :class:`SegmentExport`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from airflow_provider_constantcontact.constants import MAX_IMPORT_BODY_BYTES, MAX_IMPORT_CONTACTS
from airflow_provider_constantcontact.exceptions import ConstantContactExportError, SegmentSourceError
from airflow_provider_constantcontact.export import cleaning
from airflow_provider_constantcontact.export.batches import BodyBatcher, ImportBody
from airflow_provider_constantcontact.export.dedup import EmailDeduplicator, email_hashes
from airflow_provider_constantcontact.export.encoding import contact_json
from airflow_provider_constantcontact.export.fields import (
    DUPLICATE,
    EMAIL_TOO_LONG,
    INVALID_EMAIL,
    OK,
    ContactPlan,
)
from airflow_provider_constantcontact.export.rejects import RejectsWriter, file_path, output_path
from airflow_provider_constantcontact.export.sender import send_bodies
from airflow_provider_constantcontact.export.source import SegmentSource, find_unreadable_file
from airflow_provider_constantcontact.export.summary import ExportSummary

if TYPE_CHECKING:
    from airflow_provider_constantcontact.hooks.constantcontact import ConstantContactHook

READ_BATCH_ROWS = 32 * 1024
#: Distinct values of the segment column shown when the ``segments`` filter matches no row.
SEGMENT_VALUES_SHOWN = 10


@dataclass(frozen=True)
class ExportSettings:
    """Everything an export needs to know besides the data and the hook, already validated."""

    list_ids: list[str]
    plan: ContactPlan
    segment_column: str | None = None
    segments: list[Any] | None = None
    rejects_path: str | None = None
    #: Connection for object storage (the source, the rejects file).
    storage_conn_id: str | None = None
    max_contacts: int | None = None
    dry_run: bool = False

    @property
    def columns(self) -> list[str]:
        """Every column the export reads: the mapped ones and the segment column."""
        return list(
            dict.fromkeys([*self.plan.columns, *([self.segment_column] if self.segment_column else [])])
        )


@dataclass(frozen=True)
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
    #: Hashes (int64) of every normalised email of the segment, valid or not.
    email_hashes: pa.Array


class SegmentReader:
    """The selected rows of a segment, batch by batch, always in the same order."""

    def __init__(self, source: SegmentSource, settings: ExportSettings) -> None:
        self.source = source
        self.dataset = source.dataset(settings.columns)
        self.filter = self._segment_filter(settings.segment_column, settings.segments)
        self._arange = pa.array(range(READ_BATCH_ROWS), pa.uint32())

    def _segment_filter(self, column: str | None, segments: list[Any] | None) -> ds.Expression | None:
        if column is None or segments is None:
            return None
        column_type = self.dataset.schema.field(column).type
        try:
            values = pa.array(segments).cast(column_type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as err:
            raise ValueError(
                f"segments {segments!r} do not match the type {column_type} of {column!r}"
            ) from err
        return ds.field(column).isin(values)

    def batches(self, columns: list[str]) -> Iterator[pa.RecordBatch]:
        """Ordered batches (row numbers line up between the passes) with little read-ahead.

        Memory stays flat whatever the size of the segment. Coalesced read-ahead of whole row
        groups (pre_buffer) pays off on object storage only.
        """
        try:
            yield from self.dataset.to_batches(
                columns=columns,
                filter=self.filter,
                batch_size=READ_BATCH_ROWS,
                batch_readahead=2,
                fragment_readahead=1,
                fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=not self.source.is_local),
                use_threads=False,
            )
        except (pa.ArrowException, OSError) as err:
            # A corrupt data page fails without naming its file: find the file (error path only).
            named = find_unreadable_file(self.dataset, columns, self.filter)
            if named is None:
                raise
            raise named from err

    def row_numbers(self, offset: int, length: int) -> pa.Array:
        """``offset, offset + 1, ...`` (uint32) for a batch of ``length`` rows."""
        if length > len(self._arange):
            self._arange = pa.array(range(length), pa.uint32())
        return pc.add(self._arange.slice(0, length), pa.scalar(offset, pa.uint32()))

    def segment_values(self, column: str) -> dict[Any, int]:
        """The most common values of ``column`` over the whole source (no filter), with counts."""
        counts: dict[Any, int] = {}
        for batch in self.dataset.to_batches(columns=[column], use_threads=False):
            found = pc.value_counts(batch.column(0))
            for value, count in zip(
                found.field("values").to_pylist(), found.field("counts").to_pylist(), strict=True
            ):
                counts[value] = counts.get(value, 0) + count
        top = sorted(counts.items(), key=lambda item: -item[1])[:SEGMENT_VALUES_SHOWN]
        return dict(top)


def check_column_types(source: SegmentSource, plan: ContactPlan) -> None:
    """Fail, naming the column, its type and the file, for a type the export cannot send."""
    for path, schema in zip(source.files, source.schemas, strict=True):
        for spec in plan.specs:
            column = plan.field_mapping[spec.name]
            if column not in schema.names:
                continue  # a partition key: text
            column_type = schema.field(column).type
            ok = (
                cleaning.is_text_type(column_type)
                if spec.kind == "email"
                else cleaning.is_supported_type(column_type)
            )
            if not ok:
                wanted = "text (string or binary)" if spec.kind == "email" else "a scalar type"
                raise SegmentSourceError(
                    f"Column {column!r} (mapped to {spec.name!r}) holds {column_type} in {path}; "
                    f"it must hold {wanted}. Convert it in the query that writes the segment."
                )


def scan_segment(reader: SegmentReader, plan: ContactPlan, log: logging.Logger | Any) -> SegmentScan:
    """Pass one: reason code of every row, duplicates, counts; nothing is sent."""
    started = time.monotonic()
    dedup = EmailDeduplicator()
    codes: list[pa.Array] = []
    hashes: list[pa.Array] = []
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
        hashes.append(batch_hashes)
        cleaning.merge_counts(counts, cleaning.count_codes(batch_codes, plan.reasons).items())
        _sample(samples, plan, batch_codes, emails)
        codes.append(batch_codes)
        rows += batch.num_rows
    if rows >= 2**32:
        raise ValueError("The segment has more than 4,294,967,295 rows; split it into several exports")
    duplicate_mask, duplicates = dedup.duplicate_mask(rows)
    valid = counts.pop("", 0)
    scan = SegmentScan(
        codes=pa.chunked_array(codes, pa.int8()),
        duplicate_mask=duplicate_mask,
        rows_read=rows,
        duplicates=duplicates,
        rejected=counts,
        contacts=valid - duplicates,
        email_hashes=pa.concat_arrays(hashes) if hashes else pa.array([], pa.int64()),
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
    rejects: RejectsWriter | None,
    truncated: dict[str, int],
) -> Iterator[ImportBody]:
    """Pass two: the request bodies, in order; the rows not sent go to ``rejects``.

    Every row not sent goes to the rejects file, duplicates included, so that each input row is
    either sent or visible there with its reason. ``truncated`` is increased by the number of
    values each free-text field had to shorten.
    """
    plan = settings.plan
    reader.source.check_unchanged()
    batcher = BodyBatcher(
        settings.list_ids, max_bytes=MAX_IMPORT_BODY_BYTES, max_contacts=MAX_IMPORT_CONTACTS
    )
    reasons = pa.array(plan.reasons, pa.string())
    offset = 0
    encoded = 0
    for batch in reader.batches(plan.columns):
        length = batch.num_rows
        codes = scan.codes.slice(offset, length).combine_chunks()
        duplicate = pc.equal(scan.duplicate_mask.slice(offset, length), 1)
        codes = pc.if_else(duplicate, pa.scalar(DUPLICATE, pa.int8()), codes)
        offset += length
        keep = pc.equal(codes, OK)
        if rejects is not None:
            not_sent = pc.invert(keep)
            if pc.any(not_sent).as_py():
                rejects.write_rejects(batch.filter(not_sent), reasons.take(codes.filter(not_sent)))
        contacts = batch.filter(keep)
        if contacts.num_rows:
            encoded += contacts.num_rows
            yield from batcher.add(contact_json(contacts, plan, truncated))
    yield from batcher.flush()
    if offset != scan.rows_read or encoded != scan.contacts:
        raise ConstantContactExportError(
            f"The second pass read {offset:,} rows and encoded {encoded:,} contacts, the first "
            f"{scan.rows_read:,} rows and {scan.contacts:,} contacts: did the segment change while it "
            "was read? Run the export again once whatever writes it has finished."
        )


def _batches_left(contacts: int, bytes_per_contact: float) -> int:
    """Estimated requests still needed for ``contacts`` of the average size seen so far."""
    if contacts <= 0:
        return 0
    by_bytes = contacts * bytes_per_contact / (MAX_IMPORT_BODY_BYTES - 100)
    return max(math.ceil(by_bytes), math.ceil(contacts / MAX_IMPORT_CONTACTS))


class SegmentExport:
    """One run of the export: checks, both passes, sending (unless a dry run), the summary."""

    def __init__(self, source: SegmentSource, settings: ExportSettings, log: logging.Logger | Any) -> None:
        self.settings = settings
        self.log = log
        check_column_types(source, settings.plan)
        if settings.rejects_path:
            target = output_path(settings.rejects_path, settings.storage_conn_id)
            if source.includes(target.path, target.protocol or ""):
                raise SegmentSourceError(
                    f"rejects_path {settings.rejects_path} lies inside the segment source: a later run "
                    "would read the rejected rows as part of the segment. Write the rejects outside the "
                    "source's folders and globs; nothing was sent."
                )
        # Missing columns and incompatible types fail here, before any request.
        self.reader = SegmentReader(source, settings)

    def scan(self) -> SegmentScan:
        """Pass one, and the checks its counts allow before anything is sent."""
        settings = self.settings
        scan = scan_segment(self.reader, settings.plan, self.log)
        if settings.max_contacts is not None and scan.contacts > settings.max_contacts:
            raise ValueError(
                f"The segment has {scan.contacts:,} valid, distinct contacts, more than "
                f"max_contacts={settings.max_contacts:,}; nothing was sent"
            )
        if self.reader.filter is not None and scan.rows_read == 0:
            self.log.warning(
                "No row of %r matches segments=%r, so nothing will be exported. The most common "
                "values of %r are (value: rows): %s. Segment values are compared exactly (case too).",
                settings.segment_column,
                settings.segments,
                settings.segment_column,
                self.reader.segment_values(settings.segment_column or ""),
            )
        return scan

    def import_segment(self, hook: ConstantContactHook | None, scan: SegmentScan) -> ExportSummary:
        """Pass two: encode and send (``hook`` None: a dry run that sends nothing); the summary."""
        settings = self.settings
        started = time.monotonic()
        activity_ids: list[str] = []
        batches = total_bytes = sent_contacts = 0
        truncated: dict[str, int] = {}
        rejects = None
        if settings.rejects_path:
            columns = settings.plan.columns
            schema = pa.schema([self.reader.dataset.schema.field(column) for column in columns])
            rejects = RejectsWriter(settings.rejects_path, schema, conn_id=settings.storage_conn_id)
        try:
            bodies = encode_bodies(self.reader, scan, settings, rejects, truncated)
            if hook is None:
                for body in bodies:
                    batches += 1
                    total_bytes += len(body.body)
                    sent_contacts += body.contacts
                self.log.info(
                    "Dry run: would send %d contacts in %d request(s), %d bytes; nothing was sent",
                    sent_contacts,
                    batches,
                    total_bytes,
                )
            else:
                for number, body, activity in send_bodies(hook.import_contacts_body, bodies, self.log):
                    batches = number
                    total_bytes += len(body.body)
                    sent_contacts += body.contacts
                    activity_ids.append(activity["activity_id"])
                    self._log_progress(number, body, activity, sent_contacts, total_bytes, scan, started)
        except BaseException:
            if rejects is not None:
                rejects.abort()
            raise
        if rejects is not None:
            rejects.close()
        summary: ExportSummary = {
            "activity_ids": activity_ids,
            "list_ids": settings.list_ids,
            "rows_read": scan.rows_read,
            "contacts_submitted": sent_contacts,
            "duplicates": scan.duplicates,
            "rejected": dict(sorted(scan.rejected.items())),
            "batches": batches,
            "bytes_submitted": total_bytes,
            "truncated": dict(sorted(truncated.items())),
            "dry_run": hook is None,
            "files": len(self.reader.source.files),
        }
        if self.reader.filter is not None:
            summary["rows_filtered_out"] = self.reader.dataset.count_rows() - scan.rows_read
        if rejects is not None:
            summary["rejects_path"] = file_path(settings.rejects_path)
            summary["rejects_written"] = rejects.rows
        self._check_accounting(summary, scan)
        return summary

    def _log_progress(
        self,
        number: int,
        body: ImportBody,
        activity: dict[str, Any],
        sent_contacts: int,
        total_bytes: int,
        scan: SegmentScan,
        started: float,
    ) -> None:
        elapsed = max(time.monotonic() - started, 1e-9)
        estimate = number + _batches_left(scan.contacts - sent_contacts, total_bytes / sent_contacts)
        self.log.info(
            "Batch %d of ~%d sent: %d contacts, %d bytes (activity %s); %d of %d contacts "
            "(%.0f%%), %.0f contacts/s",
            number,
            estimate,
            body.contacts,
            len(body.body),
            activity["activity_id"],
            sent_contacts,
            scan.contacts,
            100.0 * sent_contacts / max(scan.contacts, 1),
            sent_contacts / elapsed,
        )

    @staticmethod
    def _check_accounting(summary: ExportSummary, scan: SegmentScan) -> None:
        """Every row read is sent, a duplicate or rejected, and every row not sent is in the rejects file."""
        sent = summary["contacts_submitted"]
        rejected = sum(scan.rejected.values())
        accounted = sent + scan.duplicates + rejected
        if accounted != scan.rows_read:
            raise ConstantContactExportError(
                f"Row accounting does not add up: {scan.rows_read:,} rows read but {sent:,} submitted "
                f"+ {scan.duplicates:,} duplicates + {rejected:,} rejected = {accounted:,} "
                "(a bug: please report)"
            )
        written = summary.get("rejects_written")
        if written is not None and written != scan.rows_read - sent:
            raise ConstantContactExportError(
                f"The rejects file has {written:,} rows, expected every row not sent: "
                f"{scan.rows_read - sent:,} (a bug: please report)"
            )
