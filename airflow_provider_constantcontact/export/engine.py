"""One export run in the documented order: the segment's two passes, mirror removals, the summary.

Read the segment (:mod:`.passes`, pass one), read each target list's members and check the
removal guard (mirror mode, :mod:`.mirror`), then create missing lists, send the bodies of pass
two through the hook from a background thread (:mod:`.sender`) and remove the members who left.
Nothing here knows about Airflow tasks: the operator builds :class:`ExportSettings` and
:class:`ListTargets` and runs :class:`SegmentExport`.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from airflow_provider_constantcontact.constants import MAX_IMPORT_BODY_BYTES, MAX_IMPORT_CONTACTS
from airflow_provider_constantcontact.exceptions import ConstantContactExportError, SegmentSourceError
from airflow_provider_constantcontact.export.batches import ImportBody
from airflow_provider_constantcontact.export.journal import RemovalJournal
from airflow_provider_constantcontact.export.mirror import (
    ListRemovals,
    check_removal_guard,
    read_removals,
    send_removals,
    write_removals,
)
from airflow_provider_constantcontact.export.passes import SegmentScan, encode_bodies, scan_segment
from airflow_provider_constantcontact.export.preflight import create_or_find_list
from airflow_provider_constantcontact.export.reader import SegmentReader, check_column_types
from airflow_provider_constantcontact.export.rejects import RejectsWriter, file_path, output_path
from airflow_provider_constantcontact.export.sender import send_bodies
from airflow_provider_constantcontact.export.settings import NEW_LIST_PLACEHOLDER, ExportSettings, ListTargets
from airflow_provider_constantcontact.export.source import SegmentSource
from airflow_provider_constantcontact.export.summary import ExportSummary

if TYPE_CHECKING:
    from airflow_provider_constantcontact.hooks.constantcontact import ConstantContactHook


def _batches_left(contacts: int, bytes_per_contact: float) -> int:
    """Estimated requests still needed for ``contacts`` of the average size seen so far."""
    if contacts <= 0:
        return 0
    by_bytes = contacts * bytes_per_contact / (MAX_IMPORT_BODY_BYTES - 100)
    return max(math.ceil(by_bytes), math.ceil(contacts / MAX_IMPORT_CONTACTS))


class SegmentExport:
    """One run of the export: checks, both passes, sending (unless planning only), the summary."""

    def __init__(self, source: SegmentSource, settings: ExportSettings, log: logging.Logger | Any) -> None:
        self.settings = settings
        self.log = log
        check_column_types(source, settings.plan)
        for name, path in (
            ("rejects_path", settings.rejects_path),
            ("removals_path", settings.removals_path),
        ):
            if not path:
                continue
            target = output_path(path, settings.storage_conn_id)
            if source.includes(target.path, target.protocol or ""):
                raise SegmentSourceError(
                    f"{name} {path} lies inside the segment source: a later run would read that file as "
                    "part of the segment. Write it outside the source's folders and globs; nothing was sent."
                )
        # Missing columns and incompatible types fail here, before any request.
        self.reader = SegmentReader(source, settings)

    def scan(self) -> SegmentScan:
        """Pass one, and the checks its counts allow before anything is sent."""
        settings = self.settings
        scan = scan_segment(
            self.reader, settings.plan, self.log, keep_email_hashes=settings.sync_mode == "mirror"
        )
        if settings.max_contacts is not None and scan.contacts > settings.max_contacts:
            raise ValueError(
                f"The segment has {scan.contacts:,} valid, distinct contacts, more than "
                f"max_contacts={settings.max_contacts:,}; nothing was sent"
            )
        if self.reader.filter is not None and scan.rows_read == 0:
            self.log.warning(
                "No row of %r matches segments=%r, so nothing will be exported; segment values are "
                "compared exactly (case and spaces too). %s",
                settings.segment_column,
                settings.segments,
                # Counts and masked values only: the column may hold names or emails by mistake.
                self.reader.segment_values(settings.segment_column or "", settings.segments or []).describe(),
            )
        return scan

    def run(self, hook: ConstantContactHook, targets: ListTargets) -> ExportSummary:
        """The whole export in the documented order; the summary.

        Read the segment; in mirror mode read each list's members and check the removal guard;
        then (unless planning only) create the missing lists, import, and remove the members who
        left. Nothing changes in Constant Contact before the guard has passed for every list.
        """
        settings = self.settings
        scan = self.scan()
        mirror = settings.sync_mode == "mirror"
        removals: list[ListRemovals] = []
        listing_requests = 0
        if mirror:
            for list_id in targets.list_ids:
                plan, requests = read_removals(hook, list_id, scan.email_hashes, self.log)
                removals.append(plan)
                listing_requests += requests
            check_removal_guard(
                removals, max_removal_ratio=settings.max_removal_ratio, contacts=scan.contacts
            )
        sender = None if settings.plan_only else hook
        list_ids = list(targets.list_ids)
        for name in targets.names_to_create:
            if sender is None:
                self.log.info("Plan only: would create the contact list %r", name)
                list_ids.append(NEW_LIST_PLACEHOLDER)
            else:
                list_ids.append(create_or_find_list(hook, name, self.log))
        summary = self.import_segment(sender, scan, list_ids)
        if targets.names_to_create and sender is None:
            summary["lists_to_create"] = list(targets.names_to_create)
        elif targets.names_to_create:
            summary["lists_created"] = list(targets.names_to_create)
        if mirror:
            journal = None
            if settings.removals_path and sender is not None:
                journal = RemovalJournal(settings.removals_path, settings.storage_conn_id)
                self.log.info(
                    "Each removal request is journaled before it is sent, in %s (%d entries left by "
                    "earlier runs that did not finish)",
                    journal.path,
                    len(journal.earlier),
                )
            removal_ids = send_removals(
                sender, removals, self.log, before_request=journal.record if journal else None
            )
            summary["activity_ids"] = [*summary["activity_ids"], *removal_ids]
            summary["removal_activity_ids"] = removal_ids
            summary["removed"] = {plan.list_id: plan.count for plan in removals}
            summary["members_before"] = {plan.list_id: plan.members_before for plan in removals}
            summary["listing_requests"] = listing_requests
            if settings.removals_path:
                summary["removals_path"] = file_path(settings.removals_path)
                written = write_removals(settings.removals_path, removals, settings.storage_conn_id, journal)
                summary["removals_written"] = written
                if journal is not None:
                    summary["removals_recovered"] = written - sum(plan.count for plan in removals)
        return summary

    def import_segment(
        self, hook: ConstantContactHook | None, scan: SegmentScan, list_ids: list[str]
    ) -> ExportSummary:
        """Pass two: encode and send (``hook`` None: plan only, nothing is sent); the summary."""
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
            bodies = encode_bodies(self.reader, scan, settings, list_ids, rejects, truncated)
            if hook is None:
                for body in bodies:
                    batches += 1
                    total_bytes += len(body.body)
                    sent_contacts += body.contacts
                self.log.info(
                    "Plan only: would send %d contacts in %d request(s), %d bytes; nothing was sent",
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
            "list_ids": [list_id for list_id in list_ids if list_id != NEW_LIST_PLACEHOLDER],
            "rows_read": scan.rows_read,
            "contacts_submitted": sent_contacts,
            "duplicates": scan.duplicates,
            "rejected": dict(sorted(scan.rejected.items())),
            "batches": batches,
            "bytes_submitted": total_bytes,
            "truncated": dict(sorted(truncated.items())),
            "plan_only": hook is None,
            "dry_run": hook is None,
            "files": len(self.reader.source.files),
        }
        if self.reader.filter is not None:
            summary["rows_filtered_out"] = self.reader.dataset.count_rows() - scan.rows_read
        if rejects is not None and settings.rejects_path:
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
