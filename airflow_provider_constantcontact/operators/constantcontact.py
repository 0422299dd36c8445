"""Export a Parquet customer segment into Constant Contact contact lists.

The operator owns the parameters, the checks against the account (preflight) and the wait; the
export itself (two streaming passes over the segment, sending from a background thread) is
:mod:`airflow_provider_constantcontact.export.engine`. See docs/export-operator.md and
docs/architecture.md.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.exceptions import AirflowProviderDeprecationWarning
from airflow.sdk import BaseOperator

from airflow_provider_constantcontact import lineage
from airflow_provider_constantcontact._compat import conf
from airflow_provider_constantcontact.constants import MAX_LISTS_PER_REQUEST
from airflow_provider_constantcontact.exceptions import (
    ConstantContactImportError,
)
from airflow_provider_constantcontact.export.engine import SegmentExport
from airflow_provider_constantcontact.export.fields import EMAIL_FIELD, ContactPlan
from airflow_provider_constantcontact.export.preflight import check_custom_fields, check_lists, reads_as
from airflow_provider_constantcontact.export.service_counts import check_contacts_taken
from airflow_provider_constantcontact.export.settings import SYNC_MODES, ExportSettings, ListTargets
from airflow_provider_constantcontact.export.source import resolve_segment_source
from airflow_provider_constantcontact.export.state_commit import commit_state
from airflow_provider_constantcontact.export.summary import ExportSummary
from airflow_provider_constantcontact.hooks.constantcontact import ConstantContactHook
from airflow_provider_constantcontact.triggers.constantcontact import defer_import_wait
from airflow_provider_constantcontact.utils.activities import wait_for_activities
from airflow_provider_constantcontact.utils.templated import (
    ListExpressions,
    is_unset,
    optional_text,
    parse_bool,
    parse_list,
    parse_mapping,
    parse_number,
)

if TYPE_CHECKING:
    import jinja2
    from airflow.sdk import Context

#: The list parameters that pick people: a list only when a list was given or rendered, never
#: because text looks like one (see utils/templated.py).
LIST_PARAMETERS = ("source", "list_ids", "list_names", "segments")


def normalize_list_ids(value: Any, *, names: int = 0) -> list[str]:
    """One id, a comma-separated string or a list -> a de-duplicated list of ids.

    With the ``names`` lists named besides, 1 to 50 lists in all.
    """
    items = parse_list(value, "list_ids", split_commas=True, literals=False)
    ids = list(dict.fromkeys(str(item).strip() for item in items if str(item).strip()))
    if not 1 <= len(ids) + names <= MAX_LISTS_PER_REQUEST:
        what = "list_ids" if not names else f"list_ids and list_names ({names} names)"
        raise ValueError(
            f"{what} must hold 1 to {MAX_LISTS_PER_REQUEST} contact lists in all, got {len(ids) + names}"
        )
    return ids


def normalize_list_names(value: Any) -> list[str]:
    """List names exactly as given (one name, a list), without two that read the same.

    Spaces are kept: a list really named ``"Spaced "`` is found by that name (see ``reads_as``).
    """
    names = [str(item) for item in parse_list(value, "list_names", literals=False)]
    if any(not name.strip() for name in names):
        raise ValueError("list_names holds an empty name")
    first_of_reading: dict[str, str] = {}
    for name in names:
        first_of_reading.setdefault(reads_as(name), name)
    return list(first_of_reading.values())


def _plan_only_argument(plan_only: bool | str, dry_run: bool | str | None) -> bool | str:
    """``plan_only``, or the value given under its deprecated name ``dry_run`` (with a warning).

    The argument was renamed because an attribute ``dry_run`` hides Airflow's own
    ``BaseOperator.dry_run()`` method. ``dry_run=`` is accepted until 0.2.0.
    """
    if dry_run is None:
        return plan_only
    if plan_only is not False:
        raise ValueError("plan_only and its deprecated name dry_run are both given: keep plan_only only")
    warnings.warn(
        f"ConstantContactSegmentExportOperator(dry_run={dry_run!r}) is deprecated and stops working "
        f"in 0.2.0: write plan_only={dry_run!r} instead (same meaning; dry_run is the name of "
        "Airflow's BaseOperator.dry_run() method).",
        AirflowProviderDeprecationWarning,
        stacklevel=3,
    )
    return dry_run


class ConstantContactSegmentExportOperator(BaseOperator):
    """Import the contacts of a Parquet segment into Constant Contact lists.

    :param source: A Parquet file, a folder of Parquet files or a glob; a local path or a URI
        ``ObjectStoragePath`` understands (``file://``, ``s3://``, ...), or a list of them. Templated.
    :param list_ids: One contact list id or a list (up to 50 lists with ``list_names``). Templated.
    :param list_names: Contact lists by name, besides or instead of ``list_ids``; resolved in one
        pass over the account's lists. Templated.
    :param create_missing_lists: Create the lists of ``list_names`` that do not exist (not with
        ``plan_only``, which reports them); False: an unknown name fails before anything is sent.
    :param sync_mode: ``"upsert"`` adds and updates contacts; ``"mirror"`` also removes from each
        list the members whose email is not in the segment, so the list equals the segment.
        Templated.
    :param max_removal_ratio: Mirror mode: fail, before any change to any list, when a list would
        lose more than this share of its members; 1.0 turns the guard off. Templated.
    :param removals_path: Mirror mode: where to write one Parquet row per removed membership
        (``list_id``, ``contact_id``, ``email``). Templated.
    :param state_path: Export state (docs/export-state.md): a Parquet file (local path or
        object-storage URL, through ``source_conn_id``) where this task remembers what it put into
        its lists, so that it sends only what changed and never re-adds a contact who left a list.
        Without it every run sends the whole segment and re-adds leavers. Templated.
    :param full_refresh: With ``state_path``: re-read the lists in full and re-send every contact
        of the segment (still never those who left a list), e.g. weekly. Templated.
    :param field_mapping: Constant Contact field -> Parquet column, e.g. ``{"email": "EmailAddress",
        "first_name": "FirstName", "cf:loyalty_tier": "Tier"}``; ``email`` is required; another
        field whose column renders empty (``None``, ``""``) is left out. Templated.
    :param segment_column: Column holding the segment of each row. Templated.
    :param segments: Export only rows whose ``segment_column`` is one of these. Templated.
    :param source_conn_id: Connection for object storage (``source`` and ``rejects_path``).
    :param max_contacts: Fail, before sending anything, when more valid contacts than this. Templated.
    :param plan_only: Check and prepare everything but change nothing in Constant Contact: the
        summary is the plan (what would be sent, created and removed). Templated.
    :param dry_run: Deprecated name of ``plan_only`` (it hid Airflow's ``BaseOperator.dry_run()``);
        works with an ``AirflowProviderDeprecationWarning`` until 0.2.0.
    :param rejects_path: Where to write the rows not sent (rejected or duplicate) as Parquet
        (mapped columns + ``reason``); a path ending in ``/`` gets ``rejects.parquet``. Templated.
    :param wait_for_completion: Wait until Constant Contact has processed every import.
    :param deferrable: Wait in the triggerer instead of the worker.
    :param poll_interval: Seconds between the first polls of the import activities.
    :param timeout: Seconds to wait for the imports to finish.
    :param max_error_ratio: Fail when Constant Contact rejects more than this share of contacts. Templated.
    :param max_poll_interval: Cap in seconds of the backed-off poll interval (default 300).
    :param constantcontact_conn_id: The Constant Contact connection.
    """

    template_fields: Sequence[str] = (
        "source",
        "list_ids",
        "field_mapping",
        "segment_column",
        "segments",
        "rejects_path",
        "max_contacts",
        "max_error_ratio",
        "plan_only",
        "list_names",
        "create_missing_lists",
        "sync_mode",
        "max_removal_ratio",
        "removals_path",
        "state_path",
        "full_refresh",
    )
    template_fields_renderers = {
        "field_mapping": "json",
        "segments": "json",
        "list_ids": "json",
        "list_names": "json",
    }
    ui_color = "#1856ed"
    ui_fgcolor = "#ffffff"

    def __init__(
        self,
        *,
        source: str | Sequence[str],
        field_mapping: Mapping[str, str] | str,
        list_ids: str | Sequence[str] | None = None,
        list_names: str | Sequence[str] | None = None,
        create_missing_lists: bool | str = False,
        sync_mode: str = "upsert",
        max_removal_ratio: float | str = 0.1,
        removals_path: str | None = None,
        state_path: str | None = None,
        full_refresh: bool | str = False,
        segment_column: str | None = None,
        segments: Sequence[Any] | str | None = None,
        source_conn_id: str | None = None,
        max_contacts: int | str | None = None,
        plan_only: bool | str = False,
        dry_run: bool | str | None = None,
        rejects_path: str | None = None,
        wait_for_completion: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 30.0,
        timeout: float = 3600.0,
        max_error_ratio: float | str | None = None,
        max_poll_interval: float | None = None,
        constantcontact_conn_id: str = ConstantContactHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source = lineage.plain_source(source)
        lineage.declare_lineage(self, self.source)
        self.list_ids = list_ids
        self.list_names = list_names
        self.create_missing_lists = create_missing_lists
        self.sync_mode = sync_mode
        self.max_removal_ratio = max_removal_ratio
        self.removals_path = removals_path
        self.state_path = state_path
        self.full_refresh = full_refresh
        self.field_mapping = field_mapping
        self.segment_column = segment_column
        self.segments = segments
        self.source_conn_id = source_conn_id
        self.max_contacts = max_contacts
        self.plan_only = _plan_only_argument(plan_only, dry_run)
        self.rejects_path = rejects_path
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.max_error_ratio = max_error_ratio
        self.max_poll_interval = max_poll_interval
        self.constantcontact_conn_id = constantcontact_conn_id

    def render_template(
        self,
        content: Any,
        context: Context,
        jinja_env: jinja2.Environment | None = None,
        seen_oids: set[int] | None = None,
    ) -> Any:
        """Render as Airflow does; a list parameter's template is a list only when it rendered one.

        Airflow calls this for each template field's value (``content`` is then that attribute).
        """
        name = next(
            (name for name in LIST_PARAMETERS if isinstance(content, str) and content is getattr(self, name)),
            None,
        )
        if name is None:
            return super().render_template(content, context, jinja_env, seen_oids)
        jinja_env = jinja_env or self.get_template_env()
        with ListExpressions(jinja_env) as expressions:
            rendered = super().render_template(content, context, jinja_env, seen_oids)
        return expressions.list_value(content, rendered, name)

    @cached_property
    def hook(self) -> ConstantContactHook:
        """The hook all of this task's requests go through."""
        return ConstantContactHook(self.constantcontact_conn_id)

    # -------------------------------------------------------------------------------- settings
    def _settings(self) -> ExportSettings:
        """The rendered parameters, parsed and checked (before any file is read)."""
        segment_column = optional_text(self.segment_column, "segment_column")
        segments = parse_list(self.segments, "segments", literals=False)
        if segment_column is None and segments:
            raise ValueError("segments needs segment_column: the column holding each row's segment")
        if segment_column is not None and not segments:
            raise ValueError(f"segment_column {segment_column!r} is set, so segments must list at least one")
        max_contacts = parse_number(self.max_contacts, "max_contacts", integer=True, minimum=0)
        sync_mode = (optional_text(self.sync_mode, "sync_mode") or "upsert").lower()
        if sync_mode not in SYNC_MODES:
            raise ValueError(f"sync_mode must be one of {', '.join(SYNC_MODES)}, got {self.sync_mode!r}")
        removals_path = optional_text(self.removals_path, "removals_path")
        if removals_path and sync_mode != "mirror":
            raise ValueError("removals_path needs sync_mode='mirror': only mirror mode removes members")
        max_removal_ratio = parse_number(self.max_removal_ratio, "max_removal_ratio", minimum=0, maximum=1)
        state_path = optional_text(self.state_path, "state_path")
        if state_path is not None and state_path.endswith("/"):
            raise ValueError(
                f"state_path {state_path!r} names a folder; give a file, e.g. {state_path}state.parquet"
            )
        # Without state every run is a full export already: full_refresh changes nothing then.
        full_refresh = parse_bool(self.full_refresh, "full_refresh") and state_path is not None
        return ExportSettings(
            plan=ContactPlan(self._field_mapping()),
            segment_column=segment_column,
            segments=segments or None,
            rejects_path=optional_text(self.rejects_path, "rejects_path"),
            storage_conn_id=self.source_conn_id,
            max_contacts=None if max_contacts is None else int(max_contacts),
            plan_only=parse_bool(self.plan_only, "plan_only"),
            sync_mode=sync_mode,
            max_removal_ratio=0.1 if max_removal_ratio is None else float(max_removal_ratio),
            removals_path=removals_path,
            state_path=state_path,
            full_refresh=full_refresh,
        )

    def _field_mapping(self) -> dict[str, str]:
        """The rendered mapping; a field other than email whose column is empty is not mapped.

        An optional column left empty in a form (``None``, ``""``) means "do not export this field".
        """
        mapping = parse_mapping(self.field_mapping, "field_mapping")
        return {
            name: column for name, column in mapping.items() if name == EMAIL_FIELD or not is_unset(column)
        }

    def _max_error_ratio(self) -> float | None:
        return parse_number(self.max_error_ratio, "max_error_ratio", minimum=0, maximum=1)

    # --------------------------------------------------------------------------------- execute
    def execute(self, context: Context) -> ExportSummary:
        """Check everything, export in two passes, then (optionally) wait; return the summary."""
        settings = self._settings()
        max_error_ratio = self._max_error_ratio()
        list_names = normalize_list_names(self.list_names)
        list_ids = normalize_list_ids(self.list_ids, names=len(list_names))
        sources = parse_list(self.source, "source", literals=False)
        source = resolve_segment_source(sources, conn_id=self.source_conn_id)
        export = SegmentExport(source, settings, self.log)
        targets = self._preflight(settings, list_ids, list_names)
        summary = export.run(self.hook, targets)
        lineage.emit_list_events(context, summary)
        self.log.info("Export summary: %s", {k: v for k, v in summary.items() if k != "activity_ids"})
        activity_ids = summary["activity_ids"]
        context["ti"].xcom_push(key="activity_ids", value=activity_ids)
        if settings.plan_only:
            return summary
        if not activity_ids or not self.wait_for_completion:
            self._commit_state(summary, confirmed=not activity_ids)
            return summary
        if self.deferrable:
            defer_import_wait(
                self,
                activity_ids=activity_ids,
                constantcontact_conn_id=self.constantcontact_conn_id,
                poll_interval=self.poll_interval,
                timeout=self.timeout,
                max_error_ratio=max_error_ratio,
                max_poll_interval=self.max_poll_interval,
                resume_state=dict(summary),
            )
        result = wait_for_activities(
            self.hook,
            activity_ids,
            poll_interval=self.poll_interval,
            timeout=self.timeout,
            max_error_ratio=max_error_ratio,
            max_poll_interval=self.max_poll_interval,
        )
        return self._commit_state(self._finish(summary, result), confirmed=True)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> ExportSummary:
        """Resume after the trigger: fail unless every import completed, then cross-check counts.

        The export's summary comes back in the trigger's event (``resume_state``), not in
        ``defer()`` kwargs, which ``airflow dags test`` does not pass on.
        """
        if event.get("status") != "success":
            raise ConstantContactImportError(event.get("message") or f"Import wait ended with {event!r}")
        summary: ExportSummary = dict(event.get("resume_state") or {})  # type: ignore[assignment]  # a plain dict from the trigger: checked next
        if "contacts_submitted" not in summary:
            raise ConstantContactImportError(
                "The import wait ended without the export's summary (a trigger from an older version of "
                "this provider?); the imports completed, but their counts cannot be checked."
            )
        lineage.emit_list_events(context, summary)
        context["ti"].xcom_push(key="activity_ids", value=summary["activity_ids"])
        return self._commit_state(self._finish(summary, event["summary"]), confirmed=True)

    def _commit_state(self, summary: ExportSummary, *, confirmed: bool) -> ExportSummary:
        """With state: the run's journal becomes the state (confirmed, or to be checked next run)."""
        state_path = summary.get("state_path")
        if state_path:
            commit_state(
                self.hook,
                state_path,
                self.source_conn_id,
                activity_ids=summary["activity_ids"],
                confirmed=confirmed,
                log=self.log,
            )
            summary["state_committed"] = True
        return summary

    def _finish(self, summary: ExportSummary, result: Mapping[str, Any]) -> ExportSummary:
        """Add the final activity counters; fail when Constant Contact took fewer contacts than sent.

        See :mod:`~airflow_provider_constantcontact.export.service_counts` for the counters relied on.
        """
        totals = dict(result["totals"])
        summary.update(totals)  # type: ignore[typeddict-item]  # STATUS_COUNTERS: all ExportSummary keys
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
        check_contacts_taken(
            summary.get("contacts_by_activity"),
            summary["contacts_submitted"],
            result["activities"],
            set(summary.get("removal_activity_ids", [])),
        )
        return summary

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the Parquet source in, each changed list out (see lineage.py)."""
        return lineage.openlineage_facets(self, task_instance)

    # ------------------------------------------------------------------------------- preflight
    def _preflight(self, settings: ExportSettings, list_ids: list[str], list_names: list[str]) -> ListTargets:
        """Every list and custom field must exist (or be creatable) before anything is sent."""
        targets = check_lists(
            self.hook,
            list_ids,
            list_names,
            create_missing=parse_bool(self.create_missing_lists, "create_missing_lists"),
            log=self.log,
        )
        check_custom_fields(self.hook, settings.plan)
        return targets
