"""The export's summary: the operator's return value (XCom ``return_value``), one typed definition.

Counts and ids only: never an email, a name or a token. Keys marked optional appear only in the
situations their comment names. ``docs/export-operator.md`` shows an example.
"""

from __future__ import annotations

from typing import TypedDict


class _Always(TypedDict):
    """The keys every summary has."""

    #: Every activity started (imports, then removals in mirror mode), for the sensor.
    activity_ids: list[str]
    list_ids: list[str]
    #: Rows of the segment (after the ``segments`` filter).
    rows_read: int
    contacts_submitted: int
    duplicates: int
    #: Reject reason -> rows.
    rejected: dict[str, int]
    #: Import requests sent (or that a plan-only run would send) and their bytes.
    batches: int
    bytes_submitted: int
    #: Field -> values shortened to the field's limit.
    truncated: dict[str, int]
    #: Nothing was changed in Constant Contact: the summary is the plan (``plan_only=True``).
    plan_only: bool
    #: The same as ``plan_only`` under its old name, kept until 0.2.0 for readers of older summaries.
    dry_run: bool
    files: int


class ExportSummary(_Always, total=False):
    """What one export run did (and, after waiting, what Constant Contact reported)."""

    #: Import activity id -> contacts in its request body (when something was sent): what the
    #: wait's cross-check compares each activity's counters with.
    contacts_by_activity: dict[str, int]
    #: With ``segment_column``: rows of other segments.
    rows_filtered_out: int
    #: With ``rejects_path``: where the rows not sent went, and how many.
    rejects_path: str
    rejects_written: int
    #: After waiting: the activities' counters summed (``utils.activities.STATUS_COUNTERS``;
    #: ``list_count`` counts the lists of removal activities), their states, and ``waited``.
    items_total_count: int
    items_completed_count: int
    person_count: int
    error_count: int
    correctable_count: int
    cannot_add_to_list_count: int
    list_count: int
    activity_states: dict[str, str]
    waited: bool
    #: list_names with create_missing_lists: the names created (or, when planning only, to create).
    lists_created: list[str]
    lists_to_create: list[str]
    #: Mirror mode: list id -> memberships removed (or that a plan-only run would remove), list id ->
    #: members before the run, the removal activities (also in activity_ids), the contacts
    #: listing's requests, and with removals_path the file of removed memberships; of its rows,
    #: those journaled by earlier runs that did not finish (not in a dry run).
    removed: dict[str, int]
    members_before: dict[str, int]
    removal_activity_ids: list[str]
    listing_requests: int
    removals_path: str
    removals_written: int
    #: With state_path (docs/export-state.md): the state file; how each list's changes were read
    #: ("incremental" or "full") and the requests that took; the contacts skipped as unchanged, to
    #: add (new to a list) and to update; memberships kept out because the contact left that list
    #: or unsubscribed outside the export (also rows in ``rejected`` as left_list / unsubscribed
    #: when sent to no list); with plan_only the plan per list; whether the state was committed.
    state_path: str
    changes_read: dict[str, str]
    change_requests: int
    contacts_unchanged: int
    contacts_to_add: int
    contacts_to_update: int
    left_list_outside_export: int
    unsubscribed_outside_export: int
    plan: dict[str, dict[str, int]]
    state_committed: bool
    removals_recovered: int
