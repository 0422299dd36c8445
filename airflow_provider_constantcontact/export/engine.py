"""One export run in the documented order: the segment's two passes, mirror removals, the summary.

Every check that can fail without changing Constant Contact runs first, and the same when
planning only: the local ones when :class:`SegmentExport` is made (columns and types, the outputs'
locations and that they can be written, :mod:`.output_paths`), then, in :meth:`SegmentExport.run`,
pass one (:mod:`.passes`; ``max_contacts``), each target list's members and the removal guard
(mirror mode, :mod:`.mirror`), and that the source is unchanged. Only then
are missing lists created, the bodies of pass two sent through the hook from a background
thread (:mod:`.sender`) and the members who left removed. Nothing here knows about Airflow
tasks: the operator builds :class:`ExportSettings` and :class:`ListTargets` and runs
:class:`SegmentExport`.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from airflow_provider_constantcontact.constants import MAX_IMPORT_BODY_BYTES, MAX_IMPORT_CONTACTS
from airflow_provider_constantcontact.exceptions import ConstantContactExportError
from airflow_provider_constantcontact.export.batches import ImportBody
from airflow_provider_constantcontact.export.changes import ChangeCheck, check_changes
from airflow_provider_constantcontact.export.delta import (
    KEPT_LEFT,
    KEPT_UNCHANGED,
    KEPT_UNSUBSCRIBED,
    SyncPlan,
    plan_sync,
)
from airflow_provider_constantcontact.export.journal import RemovalJournal
from airflow_provider_constantcontact.export.mirror import (
    ListRemovals,
    check_removal_guard,
    read_removals,
    send_removals,
    write_removals,
)
from airflow_provider_constantcontact.export.output_paths import check_outputs
from airflow_provider_constantcontact.export.passes import SegmentScan, encode_bodies, scan_segment
from airflow_provider_constantcontact.export.preflight import create_or_find_list
from airflow_provider_constantcontact.export.reader import SegmentReader, check_column_types
from airflow_provider_constantcontact.export.rejects import RejectsWriter, rejects_schema
from airflow_provider_constantcontact.export.sender import send_bodies
from airflow_provider_constantcontact.export.settings import NEW_LIST_PLACEHOLDER, ExportSettings, ListTargets
from airflow_provider_constantcontact.export.source import SegmentSource
from airflow_provider_constantcontact.export.spill import SpillableTable
from airflow_provider_constantcontact.export.state import (
    ExportState,
    StateIdentity,
    journal_path,
    read_state,
    write_state,
)
from airflow_provider_constantcontact.export.state_commit import read_journal, stage_journal, state_identity
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
        # Missing columns and incompatible types fail here, before any request.
        self.reader = SegmentReader(source, settings)
        self.rejects_schema = (
            rejects_schema(pa.schema([self.reader.dataset.schema.field(c) for c in settings.plan.columns]))
            if settings.rejects_path
            else None
        )
        # Last of the local checks: it creates the outputs' folders.
        self.outputs = check_outputs(source, settings.outputs, settings.storage_conn_id)

    def scan(self) -> SegmentScan:
        """Pass one, and the checks its counts allow before anything is sent."""
        settings = self.settings
        scan = scan_segment(
            self.reader,
            settings.plan,
            self.log,
            keep_email_hashes=settings.sync_mode == "mirror",
            fingerprint=settings.state_path is not None,
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
        left (journaled, then the removals file). Nothing changes in Constant Contact before every
        check passed.
        """
        settings = self.settings
        if settings.state_path is None:
            self.log.warning(
                "No state_path: every run sends the whole segment again, and a contact who left a list "
                "(an unsubscribe link, or removed in Constant Contact) is put back into it. Set state_path "
                "so that the export sends only what changed and never re-adds someone who left."
            )
        scan = self.scan()
        if settings.state_path is not None:
            return self.run_with_state(hook, targets, scan)
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
        self.reader.source.check_unchanged()
        # Every check has passed: from here on (unless planning only) Constant Contact changes.
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
            self._remove(sender, removals, summary)
            summary["listing_requests"] = listing_requests
        return summary

    def _remove(
        self, sender: ConstantContactHook | None, removals: list[ListRemovals], summary: ExportSummary
    ) -> None:
        """Mirror mode: send the removals (journaled first with removals_path) and report them."""
        settings = self.settings
        journal = None
        removals_file = self.outputs.get("removals_path")
        if removals_file and sender is not None:
            journal = RemovalJournal(removals_file.file, settings.storage_conn_id)
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
        if removals_file:
            summary["removals_path"] = removals_file.file
            written = write_removals(removals_file.file, removals, settings.storage_conn_id, journal)
            summary["removals_written"] = written
            if journal is not None:
                summary["removals_recovered"] = written - sum(plan.count for plan in removals)

    def run_with_state(
        self, hook: ConstantContactHook, targets: ListTargets, scan: SegmentScan
    ) -> ExportSummary:
        """A run with export state: read what changed, plan, journal, send only the difference.

        The state is not written here: the journal beside it holds the state to commit, and
        :func:`~.state_commit.commit_state` writes it once the run's activities are confirmed
        (or, with ``wait_for_completion=False``, as unconfirmed). See docs/export-state.md.
        """
        settings = self.settings
        assert settings.state_path is not None
        mirror = settings.sync_mode == "mirror"
        list_ids = list(targets.list_ids)
        for name in targets.names_to_create:
            if settings.plan_only:
                raise ValueError(
                    f"plan_only with state_path cannot plan for the list {name!r}, which does not exist yet: "
                    "create it (or run once without plan_only)"
                )
            list_ids.append(create_or_find_list(hook, name, self.log))
        identity = state_identity(hook, list_ids, settings.plan.field_mapping)
        conn_id = settings.storage_conn_id
        loaded = [read_state(settings.state_path, conn_id, identity, self.log)]
        first_run = loaded[0] is None
        journal = read_journal(journal_path(settings.state_path), conn_id, identity)
        # Pass one's fingerprinted contacts wait on disk while a list is read in full.
        contacts = SpillableTable(scan.take_fingerprinted())
        check: ChangeCheck | None = None
        try:
            # Handed over, no reference kept here: check_changes lets the rows read go once replaced.
            check = check_changes(
                hook,
                loaded.pop() or ExportState.empty(identity),
                list_ids,
                full_refresh=settings.full_refresh or first_run,
                mirror_hashes=scan.email_hashes if mirror else None,
                journal=journal,
                log=self.log,
                before_full_listing=contacts.spill,
            )
            return self._sync(hook, targets, scan, contacts, check, identity, list_ids)
        finally:
            contacts.close()
            if check is not None:  # also when the run failed before the journal was written
                check.remove_spills()

    def _sync(
        self,
        hook: ConstantContactHook,
        targets: ListTargets,
        scan: SegmentScan,
        contacts: SpillableTable,
        check: ChangeCheck,
        identity: StateIdentity,
        list_ids: list[str],
    ) -> ExportSummary:
        """Plan from the checked state, journal, send only the difference, summarise."""
        settings = self.settings
        assert settings.state_path is not None
        mirror = settings.sync_mode == "mirror"
        conn_id = settings.storage_conn_id
        sync = plan_sync(
            check,
            list_ids,
            contacts.take(),
            scan.rows_read,
            full_refresh=settings.full_refresh,
        )
        # Only the plan, the lists' counts and the metadata are needed from here on: let the
        # checked state rows go before pass two (the plan has its own copy).
        check.state = check.state.with_table(check.state.table.schema.empty_table())
        if mirror:
            check_removal_guard(
                sync.removals, max_removal_ratio=settings.max_removal_ratio, contacts=scan.contacts
            )
        left, unsubscribed = sync.count("left"), sync.count("unsubscribed")
        if left or unsubscribed:
            self.log.info(
                "Kept out of their lists: %d contacts who left the list outside the export, %d who "
                "unsubscribed (counts per list membership; never imported into those lists again)",
                left,
                unsubscribed,
            )
        self.log.info(
            "Plan: %d to add, %d to update, %d unchanged (skipped), %d to remove; changes read %s "
            "in %d requests",
            sync.count("to_add"),
            sync.count("to_update"),
            sync.count("unchanged"),
            sum(plan.count for plan in sync.removals),
            {list_id: entry.mode for list_id, entry in check.lists.items()},
            check.requests,
        )
        sender = None if settings.plan_only else hook
        journal_state = stage_journal(sync, check, identity)
        sync.journal = None  # in the journal file from here on, not needed in memory
        if sender is not None:
            # Before any change: a killed run leaves this, and the next run knows what it removed.
            write_state(journal_path(settings.state_path), journal_state, conn_id)
        del journal_state
        check.remove_spills()  # the full listings' contact ids are in the journal now
        summary = self.import_segment(sender, scan, list_ids, sync)
        if mirror:
            self._remove(sender, sync.removals, summary)
        if targets.names_to_create:
            summary["lists_created"] = list(targets.names_to_create)
        summary["state_path"] = settings.state_path
        summary["changes_read"] = {list_id: entry.mode for list_id, entry in check.lists.items()}
        summary["change_requests"] = check.requests
        summary["contacts_to_add"] = sync.count("to_add")
        summary["contacts_to_update"] = sync.count("to_update")
        summary["left_list_outside_export"] = left
        summary["unsubscribed_outside_export"] = unsubscribed
        if settings.plan_only:
            summary["plan"] = {
                list_id: {
                    "to_add": entry.to_add,
                    "to_update": entry.to_update,
                    "unchanged": entry.unchanged,
                    "to_remove": next((p.count for p in sync.removals if p.list_id == list_id), 0),
                    "left_list_outside_export": entry.left,
                    "unsubscribed_outside_export": entry.unsubscribed,
                }
                for list_id, entry in sync.lists.items()
            }
        return summary

    def import_segment(
        self,
        hook: ConstantContactHook | None,
        scan: SegmentScan,
        list_ids: list[str],
        sync: SyncPlan | None = None,
    ) -> ExportSummary:
        """Pass two: encode and send (``hook`` None: plan only, nothing is sent); the summary."""
        settings = self.settings
        started = time.monotonic()
        activity_ids: list[str] = []
        contacts_by_activity: dict[str, int] = {}
        batches = total_bytes = sent_contacts = 0
        truncated: dict[str, int] = {}
        rejects_file = self.outputs.get("rejects_path")
        rejects = None
        if rejects_file and self.rejects_schema is not None:
            rejects = RejectsWriter(rejects_file.file, self.rejects_schema, conn_id=settings.storage_conn_id)
        try:
            bodies = encode_bodies(self.reader, scan, settings, list_ids, rejects, truncated, sync)
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
                    contacts_by_activity[activity["activity_id"]] = body.contacts
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
        if contacts_by_activity:
            summary["contacts_by_activity"] = contacts_by_activity
        if self.reader.filter is not None:
            summary["rows_filtered_out"] = self.reader.dataset.count_rows() - scan.rows_read
        if rejects_file and rejects is not None:
            summary["rejects_path"] = rejects_file.file
            summary["rejects_written"] = rejects.rows
        self._check_accounting(summary, scan, sync)
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
    def _check_accounting(summary: ExportSummary, scan: SegmentScan, sync: SyncPlan | None) -> None:
        """Every row read is sent, unchanged, a duplicate or rejected; the rejects file has the last two."""
        sent = summary["contacts_submitted"]
        unchanged = 0
        kept_out: dict[str, int] = {}
        if sync is not None:
            kept = pc.value_counts(sync.kept).to_pylist()
            by_code = {item["values"]: item["counts"] for item in kept}
            unchanged = by_code.get(KEPT_UNCHANGED, 0)
            kept_out = {
                reason: by_code[code]
                for reason, code in (("left_list", KEPT_LEFT), ("unsubscribed", KEPT_UNSUBSCRIBED))
                if by_code.get(code)
            }
            summary["rejected"] = dict(sorted({**summary["rejected"], **kept_out}.items()))
            summary["contacts_unchanged"] = unchanged
        rejected = sum(scan.rejected.values()) + sum(kept_out.values())
        accounted = sent + unchanged + scan.duplicates + rejected
        if accounted != scan.rows_read:
            raise ConstantContactExportError(
                f"Row accounting does not add up: {scan.rows_read:,} rows read but {sent:,} submitted "
                f"+ {unchanged:,} unchanged + {scan.duplicates:,} duplicates + {rejected:,} rejected = "
                f"{accounted:,} (a bug: please report)"
            )
        written = summary.get("rejects_written")
        if written is not None and written != scan.rows_read - sent - unchanged:
            raise ConstantContactExportError(
                f"The rejects file has {written:,} rows, expected every row not sent and not unchanged: "
                f"{scan.rows_read - sent - unchanged:,} (a bug: please report)"
            )
