"""
### Export a customer segment to Constant Contact, on demand

Trigger this DAG from the UI ("Trigger DAG" opens a form), the REST API or
`airflow dags trigger -c '{...}'`, and fill in:

| Param | What |
| --- | --- |
| `source` | Parquet file, folder or glob: a local path or a URI (`s3://aws_default@bucket/key`, ...) |
| `list_ids` | Constant Contact list ids (the id is in the list's URL in Constant Contact) |
| `list_names` | Lists by name, besides or instead of ids (`create_missing_lists` creates unknown ones) |
| `email_column` | The column holding the email address (required) |
| `first_name_column`, `last_name_column` | The columns holding first and last names (optional) |
| `other_fields` | More Constant Contact fields -> columns ("Add attribute"), e.g. `{"cf:tier": "tier"}` |
| `segment_column` | Column holding the segment name (empty: no segment filter) |
| `segments` | Segments to export (empty: every row) |
| `sync_mode` | `upsert` adds and updates; `mirror` also removes members who are not in the segment |
| `max_removal_ratio` | Mirror: refuse, changing nothing, when a list would lose more than this share |
| `state_path` | Export state: where this export remembers what it sent (empty: none, see the README) |
| `full_refresh` | With state: re-read the lists and re-send everyone (still never those who left a list) |
| `plan_only` | Read, validate and count everything, but change nothing in Constant Contact |
| `max_error_ratio` | Fail when Constant Contact rejected more than this fraction of the contacts |

`choose_mode` picks the path: `export_segment` submits the import and `wait_for_import` waits
for it in the triggerer (deferrable, no worker slot held) and returns the import summary; with
`plan_only`, `plan_only_export` reads, validates and counts everything but changes nothing, and
its summary (XCom) is the plan: what would have been sent, created and removed. A conf that
still says `dry_run` (this form's old name for it) is read as `plan_only`. The Constant Contact
connection is `constantcontact_default`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_provider_constantcontact.operators.constantcontact import ConstantContactSegmentExportOperator
from airflow_provider_constantcontact.sensors.constantcontact import ConstantContactImportSensor

with DAG(
    dag_id="constantcontact_manual_export",
    description="Export a Parquet customer segment to Constant Contact lists, on demand",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    # Params keep their JSON types (lists, booleans, None) when rendered into the tasks.
    render_template_as_native_obj=True,
    tags=["constantcontact", "example"],
    doc_md=__doc__,
    params={
        "source": Param(
            "",
            type="string",
            minLength=1,
            title="Source",
            description=(
                "Parquet file, folder of Parquet files, or glob: a local path or a URI "
                "(file:///data/segment.parquet, s3://aws_default@bucket/segments/ where the user part "
                "names the Airflow connection with the storage credentials)."
            ),
        ),
        "list_ids": Param(
            [],
            type="array",
            items={"type": "string", "minLength": 1},
            maxItems=50,
            title="Contact list ids",
            description=(
                "Constant Contact list ids (UUIDs), one per line. The id of a list is in its URL in "
                "Constant Contact's web app. Give ids, names, or both: 1 to 50 lists in all."
            ),
        ),
        "list_names": Param(
            [],
            type="array",
            items={"type": "string", "minLength": 1},
            maxItems=50,
            title="Contact list names",
            description="Contact lists by their exact name, one per line (instead of or besides ids).",
        ),
        "create_missing_lists": Param(
            False,
            type="boolean",
            title="Create missing lists",
            description="Create the named lists that do not exist yet (otherwise an unknown name fails).",
        ),
        "email_column": Param(
            "email",
            type="string",
            minLength=1,
            title="Email column",
            description="The column holding each contact's email address (required).",
        ),
        "first_name_column": Param(
            "first_name",
            type=["null", "string"],
            title="First name column",
            description="The column holding the first name. Empty: not exported.",
        ),
        "last_name_column": Param(
            "last_name",
            type=["null", "string"],
            title="Last name column",
            description="The column holding the last name. Empty: not exported.",
        ),
        "other_fields": Param(
            {"cf:loyalty_tier": "loyalty_tier"},
            type="object",
            title="Other fields",
            description=(
                "More Constant Contact fields and the columns holding them, e.g. "
                '{"job_title": "title", "cf:loyalty_tier": "tier"}. "cf:<name>" is a custom field, '
                "which must already exist in the account."
            ),
        ),
        "segment_column": Param(
            "segment",
            type=["null", "string"],
            title="Segment column",
            description="Column holding each row's segment name. Empty: no segment filter.",
        ),
        "segments": Param(
            [],
            type="array",
            items={"type": "string"},
            title="Segments",
            description="Segments to export, one per line. Empty: every row of the source.",
        ),
        "sync_mode": Param(
            "upsert",
            type="string",
            enum=["upsert", "mirror"],
            title="Sync mode",
            description=(
                "upsert: add and update contacts. mirror: also remove from each list the members who "
                "are not in the segment, so the list equals the segment (a mirrored list belongs to "
                "this export: members added by hand are removed too)."
            ),
        ),
        "max_removal_ratio": Param(
            0.1,
            type="number",
            minimum=0,
            maximum=1,
            title="Maximum removal ratio",
            description=(
                "Mirror mode: when any list would lose more than this share of its members, fail and "
                "change nothing (1 turns the guard off)."
            ),
        ),
        "state_path": Param(
            None,
            type=["null", "string"],
            title="State file",
            description=(
                "Where this export remembers what it put into its lists (a Parquet file, local or object "
                "storage; one per set of lists). With it, only changes are sent and a contact who left a "
                "list is never put back. Empty: everything is sent and leavers are re-added."
            ),
        ),
        "full_refresh": Param(
            False,
            type="boolean",
            title="Full refresh",
            description=(
                "With a state file: read the lists in full and send every contact again (never those "
                "who left a list). For a periodic reconciliation."
            ),
        ),
        "plan_only": Param(
            False,
            type="boolean",
            title="Plan only",
            description=(
                "Read, validate and count the contacts, and report what would be sent, created and "
                "removed, but change nothing in Constant Contact."
            ),
        ),
        "max_error_ratio": Param(
            0.1,
            type="number",
            minimum=0,
            maximum=1,
            title="Maximum error ratio",
            description=(
                "Fail the run when Constant Contact rejected more than this fraction of the "
                "contacts sent (e.g. 0.1 = 10%)."
            ),
        ),
    },
) as dag:

    @task.branch
    def choose_mode(params: dict) -> str:
        """A plan-only run takes its own path: the import wait only follows a real export.

        A conf with the form's old key ``dry_run`` (runs triggered by scripts written before the
        rename) still gets a plan, never a real export.
        """
        plan_only = params["plan_only"] or bool(params.get("dry_run"))
        return "plan_only_export" if plan_only else "export_segment"

    export_args = {
        "source": "{{ params.source }}",
        "list_ids": "{{ params.list_ids }}",
        "list_names": "{{ params.list_names }}",
        "create_missing_lists": "{{ params.create_missing_lists }}",
        # Constant Contact field -> column; an empty optional column is left out.
        "field_mapping": (
            "{{ dict(params.other_fields, email=params.email_column, "
            "first_name=params.first_name_column, last_name=params.last_name_column) }}"
        ),
        "sync_mode": "{{ params.sync_mode }}",
        "max_removal_ratio": "{{ params.max_removal_ratio }}",
        "state_path": "{{ params.state_path }}",
        "full_refresh": "{{ params.full_refresh }}",
        # No segments chosen: no filter, every row is exported.
        "segment_column": "{{ (params.segment_column or None) if params.segments else None }}",
        "segments": "{{ params.segments or None }}",
    }
    export = ConstantContactSegmentExportOperator(
        task_id="export_segment", wait_for_completion=False, **export_args
    )
    plan = ConstantContactSegmentExportOperator(task_id="plan_only_export", plan_only=True, **export_args)
    choose_mode() >> [export, plan]

    ConstantContactImportSensor(
        task_id="wait_for_import",
        activity_ids=export.output["activity_ids"],
        deferrable=True,
        # First poll after 10 s, backing off to one every 5 minutes.
        poke_interval=10,
        max_poll_interval=300,
        timeout=timedelta(hours=3),
        max_error_ratio="{{ params.max_error_ratio }}",
    )
