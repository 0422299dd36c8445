"""Export a Parquet customer segment into Constant Contact contact lists.

The export streams: it reads only the mapped columns of the segment, batch by batch, in two
passes. Pass one reads the email (and any field that can reject a row), classifies every row
and de-duplicates the valid emails, so the number of contacts is known, and checked against
``max_contacts``, before anything is sent. Pass two reads the mapped columns again, encodes
each valid contact's JSON with Arrow string kernels, cuts request bodies of at most 4 MB and
40,000 contacts, and posts them through the hook from a sender thread while the next body is
built. See docs/export-operator.md.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from airflow.configuration import conf
from airflow.sdk import BaseOperator

from airflow_provider_constantcontact.exceptions import (
    ConstantContactImportError,
    ConstantContactNotFoundError,
    ConstantContactValidationError,
)
from airflow_provider_constantcontact.hooks.constantcontact import ConstantContactHook
from airflow_provider_constantcontact.triggers.constantcontact import ConstantContactImportTrigger
from airflow_provider_constantcontact.utils import contact_cleaning as cleaning
from airflow_provider_constantcontact.utils import import_batches
from airflow_provider_constantcontact.utils.activities import wait_for_activities
from airflow_provider_constantcontact.utils.rejects import RejectsWriter
from airflow_provider_constantcontact.utils.segment_source import (
    SegmentSource,
    find_unreadable_file,
    resolve_segment_source,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

MAX_LIST_IDS = 50
# Up to this many list ids are checked with one GET each; more with one pass over the account's
# lists (500 a page), which costs fewer requests at the API's 4 requests a second.
MAX_LIST_GETS = 2
READ_BATCH_ROWS = 32 * 1024
# Bodies queued for the sender thread beyond the one being sent: building overlaps sending,
# and at most a few 4 MB bodies are alive at once.
MAX_QUEUED_BODIES = 2


def _batches_left(contacts: int, bytes_per_contact: float) -> int:
    """Estimated requests still needed for ``contacts`` of the average size seen so far."""
    if contacts <= 0:
        return 0
    by_bytes = contacts * bytes_per_contact / (import_batches.MAX_BODY_BYTES - 100)
    return max(math.ceil(by_bytes), math.ceil(contacts / import_batches.MAX_CONTACTS_PER_IMPORT))


def _unset(value: Any) -> Any:
    """None for a missing optional value, including a template that rendered "" or "None"."""
    if value is None or (isinstance(value, str) and value.strip() in ("", "None")):
        return None
    return value


def split_list(value: str | Sequence[Any]) -> list[Any]:
    """A list as given, or from a string: ``"a, b"`` or a rendered list such as ``"['a', 'b']"``."""
    if not isinstance(value, str):
        return list(value)
    parts = (part.strip().strip("'\"").strip() for part in value.strip().strip("[]").split(","))
    return [part for part in parts if part]


def normalize_list_ids(value: str | Sequence[str]) -> list[str]:
    """One id, a comma-separated string or a list -> a de-duplicated list of 1 to 50 ids."""
    ids = list(dict.fromkeys(str(item).strip() for item in split_list(value) if str(item).strip()))
    if not 1 <= len(ids) <= MAX_LIST_IDS:
        raise ValueError(f"list_ids must hold 1 to {MAX_LIST_IDS} contact list ids, got {len(ids)}")
    return ids


class ConstantContactSegmentExportOperator(BaseOperator):
    """Import the contacts of a Parquet segment into Constant Contact lists.

    :param source: A Parquet file, a folder of Parquet files or a glob; a local path or a URI
        ``ObjectStoragePath`` understands (``file://``, ``s3://``, ...), or a list of them. Templated.
    :param list_ids: One contact list id or a list of up to 50. Templated.
    :param field_mapping: Constant Contact field -> Parquet column, e.g. ``{"email": "EmailAddress",
        "first_name": "FirstName", "cf:loyalty_tier": "Tier"}``; ``email`` is required. Templated.
    :param segment_column: Column holding the segment of each row. Templated.
    :param segments: Export only rows whose ``segment_column`` is one of these. Templated.
    :param source_conn_id: Connection for object storage (``source`` and ``rejects_path``).
    :param max_contacts: Fail, before sending anything, when more valid contacts than this.
    :param dry_run: Do everything except sending; the summary tells what would have been sent.
    :param rejects_path: Where to write the rows not sent (rejected or duplicate) as Parquet
        (mapped columns + ``reason``). Templated.
    :param wait_for_completion: Wait until Constant Contact has processed every import.
    :param deferrable: Wait in the triggerer instead of the worker.
    :param poll_interval: Seconds between the first polls of the import activities.
    :param timeout: Seconds to wait for the imports to finish.
    :param max_error_ratio: Fail when Constant Contact rejects more than this share of contacts.
    :param constantcontact_conn_id: The Constant Contact connection.
    """

    template_fields: Sequence[str] = (
        "source",
        "list_ids",
        "field_mapping",
        "segment_column",
        "segments",
        "rejects_path",
    )
    template_fields_renderers = {"field_mapping": "json", "segments": "json", "list_ids": "json"}
    ui_color = "#1856ed"
    ui_fgcolor = "#ffffff"

    def __init__(
        self,
        *,
        source: str | Sequence[str],
        list_ids: str | Sequence[str],
        field_mapping: Mapping[str, str],
        segment_column: str | None = None,
        segments: Sequence[Any] | str | None = None,
        source_conn_id: str | None = None,
        max_contacts: int | None = None,
        dry_run: bool = False,
        rejects_path: str | None = None,
        wait_for_completion: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 30.0,
        timeout: float = 3600.0,
        max_error_ratio: float | None = None,
        constantcontact_conn_id: str = ConstantContactHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.list_ids = list_ids
        self.field_mapping = field_mapping
        self.segment_column = segment_column
        self.segments = segments
        self.source_conn_id = source_conn_id
        self.max_contacts = max_contacts
        self.dry_run = dry_run
        self.rejects_path = rejects_path
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.max_error_ratio = max_error_ratio
        self.constantcontact_conn_id = constantcontact_conn_id

    @cached_property
    def hook(self) -> ConstantContactHook:
        """The hook all of this task's requests go through."""
        return ConstantContactHook(self.constantcontact_conn_id)

    # ------------------------------------------------------------------------------ execute
    def execute(self, context: Context) -> dict[str, Any]:
        """Check everything, export in two passes, then (optionally) wait; return the summary."""
        # Optional templated fields may render to "" or "None" (non-native rendering).
        self.segment_column = _unset(self.segment_column)
        self.segments = _unset(self.segments)
        self.rejects_path = _unset(self.rejects_path)
        list_ids = normalize_list_ids(self.list_ids)
        plan = cleaning.ContactPlan(dict(self.field_mapping))
        segments = self._segments()
        source = resolve_segment_source(self.source, conn_id=self.source_conn_id)
        # Missing columns and incompatible types fail here, before any request.
        dataset = source.dataset(plan.columns + ([self.segment_column] if self.segment_column else []))
        self._preflight(list_ids, plan)
        export = _Export(self, source, dataset, plan, list_ids, segments)
        summary = export.run()
        activity_ids = summary["activity_ids"]
        context["ti"].xcom_push(key="activity_ids", value=activity_ids)
        if self.dry_run or not activity_ids or not self.wait_for_completion:
            return summary
        if self.deferrable:
            self.defer(
                trigger=ConstantContactImportTrigger(
                    activity_ids=activity_ids,
                    constantcontact_conn_id=self.constantcontact_conn_id,
                    poll_interval=self.poll_interval,
                    end_time=time.time() + self.timeout,
                    max_error_ratio=self.max_error_ratio,
                ),
                method_name="execute_complete",
                kwargs={"summary": summary},
                # A little beyond the trigger's own end_time, so the trigger reports the timeout.
                timeout=timedelta(seconds=self.timeout + 60),
            )
        result = wait_for_activities(
            self.hook,
            activity_ids,
            poll_interval=self.poll_interval,
            timeout=self.timeout,
            max_error_ratio=self.max_error_ratio,
        )
        return self._finish(summary, result)

    def execute_complete(
        self, context: Context, event: dict[str, Any], summary: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Resume after the trigger: fail unless every import completed, then cross-check counts."""
        if event.get("status") != "success":
            raise ConstantContactImportError(event.get("message") or f"Import wait ended with {event!r}")
        summary = dict(summary or {})
        context["ti"].xcom_push(key="activity_ids", value=summary.get("activity_ids", []))
        return self._finish(summary, event["summary"])

    def _finish(self, summary: dict[str, Any], result: Mapping[str, Any]) -> dict[str, Any]:
        """Add the final activity counters; fail when Constant Contact took fewer contacts than sent."""
        totals = dict(result["totals"])
        summary.update(totals)
        summary["activity_states"] = {aid: entry["state"] for aid, entry in result["activities"].items()}
        summary["waited"] = True
        self.log.info(
            "Constant Contact finished: %d items, %d added or updated, %d errors (%d correctable), "
            "%d not added to lists (unsubscribed)",
            totals["items_total_count"],
            totals["person_count"],
            totals["error_count"],
            totals["correctable_count"],
            totals["cannot_add_to_list_count"],
        )
        sent = summary["contacts_submitted"]
        if totals["items_total_count"] != sent:
            raise ConstantContactImportError(
                f"Constant Contact reports {totals['items_total_count']:,} items for the import activities "
                f"but the export sent {sent:,} contacts: {sent - totals['items_total_count']:,} contacts "
                "were dropped by the service (a body cut short?). Re-running the export is safe."
            )
        return summary

    # ----------------------------------------------------------------------------- preflight
    def _segments(self) -> list[Any] | None:
        if self.segment_column is None:
            if self.segments not in (None, []):
                raise ValueError("segments needs segment_column: the column holding each row's segment")
            return None
        segments = split_list(self.segments or [])
        if not segments:
            raise ValueError(
                f"segment_column {self.segment_column!r} is set, so segments must list at least one"
            )
        return segments

    def _unknown_list_ids(self, list_ids: list[str]) -> list[str]:
        """The ids in ``list_ids`` that name no contact list of the account, in the given order."""
        if len(list_ids) <= MAX_LIST_GETS:
            unknown = []
            for list_id in list_ids:
                try:
                    self.hook.get_contact_list(list_id)
                except ConstantContactNotFoundError:
                    unknown.append(list_id)
            return unknown
        missing = set(list_ids)
        for contact_list in self.hook.iter_contact_lists():
            missing.discard(contact_list.get("list_id"))
            if not missing:  # every id found: no need for the remaining pages
                break
        return [list_id for list_id in list_ids if list_id in missing]

    def _preflight(self, list_ids: list[str], plan: cleaning.ContactPlan) -> None:
        """Every list and custom field must exist before anything is sent."""
        unknown = self._unknown_list_ids(list_ids)
        if unknown:
            raise ConstantContactNotFoundError(
                f"Unknown Constant Contact list id(s): {', '.join(unknown)}; nothing was sent"
            )
        if plan.custom_fields:
            existing = {field.get("name") for field in self.hook.get_custom_fields()}
            missing = [name for name in plan.custom_fields if name not in existing]
            if missing:
                raise ConstantContactValidationError(
                    f"Custom field(s) {', '.join(missing)} do not exist in the Constant Contact account "
                    "(create them first; the name after 'cf:' is the field's name, not its label); "
                    "nothing was sent"
                )


class _NotSent(Exception):
    """A queued body that was not sent because an earlier one failed."""


class _Export:
    """One run of the two-pass export (state kept out of the operator, which is serialised)."""

    def __init__(
        self,
        operator: ConstantContactSegmentExportOperator,
        source: SegmentSource,
        dataset: ds.FileSystemDataset,
        plan: cleaning.ContactPlan,
        list_ids: list[str],
        segments: list[Any] | None,
    ) -> None:
        self.op = operator
        self.log = operator.log
        self.source = source
        self.plan = plan
        self.list_ids = list_ids
        self.dataset = dataset
        self.filter = self._segment_filter(segments)
        self._arange = pa.array(range(READ_BATCH_ROWS), pa.uint32())

    def _segment_filter(self, segments: list[Any] | None) -> ds.Expression | None:
        if segments is None:
            return None
        column = self.op.segment_column
        column_type = self.dataset.schema.field(column).type
        if pa.types.is_dictionary(column_type):
            column_type = column_type.value_type
        try:
            values = pa.array(segments).cast(column_type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as err:
            raise ValueError(
                f"segments {segments!r} do not match the type {column_type} of {column!r}"
            ) from err
        return ds.field(column).isin(values)

    def _batches(self, columns: list[str]) -> Iterator[pa.RecordBatch]:
        # Ordered batches (row numbers must line up between the passes), little read-ahead
        # (memory stays flat whatever the size of the segment). Coalesced read-ahead of whole
        # row groups (pre_buffer) pays off on object storage only.
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

    def _row_numbers(self, offset: int, length: int) -> pa.Array:
        if length > len(self._arange):
            self._arange = pa.array(range(length), pa.uint32())
        return pc.add(self._arange.slice(0, length), pa.scalar(offset, pa.uint32()))

    # ---------------------------------------------------------------------------------- pass 1
    def classify(self) -> None:
        """Pass one: reason code of every row, duplicates, counts; nothing is sent."""
        started = time.monotonic()
        plan = self.plan
        dedup = cleaning.EmailDeduplicator()
        codes: list[pa.Array] = []
        counts: dict[str, int] = {}
        self.samples: dict[str, str] = {}
        rows = 0
        for batch in self._batches(plan.check_columns):
            batch_codes, emails = cleaning.classify(batch, plan)
            valid = pc.equal(batch_codes, cleaning.OK)
            dedup.add(emails.filter(valid), self._row_numbers(rows, batch.num_rows).filter(valid))
            cleaning.merge_counts(counts, cleaning.count_codes(batch_codes, plan.reasons).items())
            self._sample(batch_codes, emails)
            codes.append(batch_codes)
            rows += batch.num_rows
        if rows >= 2**32:
            raise ValueError("The segment has more than 4,294,967,295 rows; split it into several exports")
        self.codes = pa.chunked_array(codes, pa.int8())
        self.duplicate_mask, self.duplicates = dedup.duplicate_mask(rows)
        self.rows_read = rows
        self.valid = counts.pop("", 0)
        self.rejected = counts
        self.contacts = self.valid - self.duplicates
        self.log.info(
            "Read %d rows from %d file(s) in %.2fs: %d contacts, %d duplicates, rejected %s",
            rows,
            len(self.source.files),
            time.monotonic() - started,
            self.contacts,
            self.duplicates,
            self.rejected or "none",
        )
        if self.samples:
            self.log.info("Masked samples of rejected emails: %s", self.samples)

    def _sample(self, codes: pa.Array, emails: pa.Array) -> None:
        """Remember one masked email per email reject reason, for the log."""
        for code in (cleaning.INVALID_EMAIL, cleaning.EMAIL_TOO_LONG):
            reason = self.plan.reasons[code]
            if reason in self.samples:
                continue
            index = pc.index(codes, pa.scalar(code, pa.int8())).as_py()
            if index >= 0:
                self.samples[reason] = cleaning.mask_email(emails[index].as_py())

    # ---------------------------------------------------------------------------------- pass 2
    def encode(self) -> Iterator[import_batches.ImportBody]:
        """Pass two: the request bodies, in order; writes the rejects file on the way.

        Every row not sent goes to the rejects file, duplicates included, so that each input
        row is either sent or visible there with its reason.
        """
        plan = self.plan
        self.source.check_unchanged()
        batcher = import_batches.BodyBatcher(
            self.list_ids,
            max_bytes=import_batches.MAX_BODY_BYTES,
            max_contacts=import_batches.MAX_CONTACTS_PER_IMPORT,
        )
        reasons = pa.array(plan.reasons, pa.string())
        rejects = None
        if self.op.rejects_path:
            schema = pa.schema([self.dataset.schema.field(column) for column in plan.columns])
            rejects = RejectsWriter(self.op.rejects_path, schema, conn_id=self.op.source_conn_id)
        self.truncated: dict[str, int] = {}
        self.rejects_written = 0
        offset = 0
        encoded = 0
        try:
            for batch in self._batches(plan.columns):
                length = batch.num_rows
                codes = self.codes.slice(offset, length).combine_chunks()
                duplicate = pc.equal(self.duplicate_mask.slice(offset, length), 1)
                codes = pc.if_else(duplicate, pa.scalar(cleaning.DUPLICATE, pa.int8()), codes)
                offset += length
                keep = pc.equal(codes, cleaning.OK)
                if rejects is not None:
                    not_sent = pc.invert(keep)
                    if pc.any(not_sent).as_py():
                        rejects.write(batch.filter(not_sent), reasons.take(codes.filter(not_sent)))
                contacts = batch.filter(keep)
                if contacts.num_rows:
                    encoded += contacts.num_rows
                    yield from batcher.add(cleaning.contact_json(contacts, plan, self.truncated))
            yield from batcher.flush()
        finally:
            if rejects is not None:
                rejects.close()
                self.rejects_written = rejects.rows
        if offset != self.rows_read or encoded != self.contacts:
            raise AssertionError(
                f"The second pass read {offset} rows and encoded {encoded} contacts, "
                f"the first {self.rows_read} rows and {self.contacts} contacts: did the source change?"
            )

    def run(self) -> dict[str, Any]:
        """Both passes, sending (unless a dry run); the summary."""
        op = self.op
        self.classify()
        if op.max_contacts is not None and self.contacts > op.max_contacts:
            raise ValueError(
                f"The segment has {self.contacts:,} valid, distinct contacts, more than "
                f"max_contacts={op.max_contacts:,}; nothing was sent"
            )
        started = time.monotonic()
        activity_ids: list[str] = []
        batches = 0
        total_bytes = 0
        sent_contacts = 0
        if op.dry_run:
            for body in self.encode():
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
            for number, body, activity in self._send(self.encode()):
                batches = number
                total_bytes += len(body.body)
                sent_contacts += body.contacts
                activity_ids.append(activity["activity_id"])
                elapsed = max(time.monotonic() - started, 1e-9)
                estimate = number + _batches_left(self.contacts - sent_contacts, total_bytes / sent_contacts)
                self.log.info(
                    "Batch %d of ~%d sent: %d contacts, %d bytes (activity %s); %d of %d contacts "
                    "(%.0f%%), %.0f contacts/s",
                    number,
                    estimate,
                    body.contacts,
                    len(body.body),
                    activity["activity_id"],
                    sent_contacts,
                    self.contacts,
                    100.0 * sent_contacts / max(self.contacts, 1),
                    sent_contacts / elapsed,
                )
        summary = {
            "activity_ids": activity_ids,
            "list_ids": self.list_ids,
            "rows_read": self.rows_read,
            "contacts_submitted": sent_contacts,
            "duplicates": self.duplicates,
            "rejected": dict(sorted(self.rejected.items())),
            "batches": batches,
            "bytes_submitted": total_bytes,
            "truncated": dict(sorted(self.truncated.items())),
            "dry_run": bool(op.dry_run),
            "files": len(self.source.files),
        }
        if self.filter is not None:
            summary["rows_filtered_out"] = self.dataset.count_rows() - self.rows_read
        if op.rejects_path:
            summary["rejects_path"] = op.rejects_path
            summary["rejects_written"] = self.rejects_written
        accounted = sent_contacts + self.duplicates + sum(self.rejected.values())
        if accounted != self.rows_read:
            raise AssertionError(
                f"Row accounting does not add up: {self.rows_read} rows read but {sent_contacts} submitted "
                f"+ {self.duplicates} duplicates + {sum(self.rejected.values())} rejected = {accounted}"
            )
        if op.rejects_path and self.rejects_written != self.rows_read - sent_contacts:
            raise AssertionError(
                f"The rejects file has {self.rejects_written} rows, expected every row not sent: "
                f"{self.rows_read - sent_contacts}"
            )
        self.log.info("Export summary: %s", {k: v for k, v in summary.items() if k != "activity_ids"})
        return summary

    def _send(
        self, bodies: Iterator[import_batches.ImportBody]
    ) -> Iterator[tuple[int, import_batches.ImportBody, dict]]:
        """POST bodies from one sender thread (the hook is not shared) while the next is built.

        Yields ``(number, body, activity)`` in order. On an error nothing further is sent and the
        error is raised after logging what was already imported.
        """
        hook = self.op.hook
        stop = threading.Event()
        accepted = [0, 0]  # requests, contacts; written by the sender thread only

        def post(body: import_batches.ImportBody) -> dict:
            if stop.is_set():  # an earlier body failed: send nothing more
                raise _NotSent
            try:
                activity = hook.import_contacts_body(body.body)
            except BaseException:
                stop.set()
                raise
            accepted[0] += 1
            accepted[1] += body.contacts
            return activity

        pending: list[tuple[import_batches.ImportBody, Future]] = []
        number = 0
        try:
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cc-import") as pool:
                try:
                    for body in bodies:
                        pending.append((body, pool.submit(post, body)))
                        while len(pending) > MAX_QUEUED_BODIES or (pending and pending[0][1].done()):
                            finished, future = pending.pop(0)
                            number += 1
                            yield number, finished, future.result()
                    while pending:
                        finished, future = pending.pop(0)
                        number += 1
                        yield number, finished, future.result()
                except BaseException:
                    stop.set()
                    raise
        except BaseException:
            # The pool has finished what was in flight: these counts are final.
            self.log.error(
                "Export stopped after %d import request(s) with %d contacts were accepted; "
                "re-running the task is safe (imports update contacts by email)",
                *accepted,
            )
            raise
