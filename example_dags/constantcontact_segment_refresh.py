"""
### Data-aware exports: refresh a segment, export it when it changed, react to the list update

Three DAGs connected by Assets instead of clock times:

1. **`constantcontact_segment_refresh`** (the producer) rewrites the segment's Parquet file from
   the customer table, keeping the rows of one segment, and declares the file's Asset
   (`segment_uri`) as its outlet. Here it is triggered by hand; in production give it your CRM
   refresh's schedule, or let the job that really writes the segment declare the outlet.
2. **`constantcontact_segment_refresh_export`** is scheduled on that Asset: every refresh queues
   it. It imports the segment into the Constant Contact lists and waits for Constant Contact to
   process the import in the triggerer (deferrable). The source is the Asset's URI, so the task
   records it as its inlet; on success the operator emits an Asset event for every list it
   changed (`contact_list_asset(list_id)`), with counts only in the event's `extra`.
3. **`constantcontact_list_updated`** (the consumer) is scheduled on those list Assets and logs
   what each triggering event says (which DAG run changed which list, how many contacts).

**Configuration**: the Airflow Variable `constantcontact_segment_refresh`, a JSON object, read
when the file is parsed, because schedules are fixed at parse time:

```json
{"customers": "/data/crm/customers.parquet", "segment": "vip",
 "segment_uri": "file:///data/segments/vip.parquet", "list_ids": ["<contact list id>"],
 "state_path": "file:///data/constantcontact-state/vip.parquet"}
```

`state_path` (optional, recommended) is the export state: only changed contacts are sent, and a
contact who left the list is never put back (see docs/export-state.md).

Without it the DAGs still parse, with placeholders (and their runs fail, naming what is missing).
Set it with `airflow variables set constantcontact_segment_refresh '{...}'` or as the
environment variable `AIRFLOW_VAR_CONSTANTCONTACT_SEGMENT_REFRESH` (read by every DAG processor
and worker). The Constant Contact connection is `constantcontact_default`. New DAGs start
paused: unpause all three. See docs/data-aware.md.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, Asset, AssetAny, ObjectStoragePath, Variable, task

from airflow_provider_constantcontact.assets import contact_list_asset
from airflow_provider_constantcontact.operators.constantcontact import ConstantContactSegmentExportOperator

log = logging.getLogger(__name__)

# Constant Contact field -> Parquet column; "cf:<name>" is a custom field that must exist.
FIELD_MAPPING = {
    "email": "email",
    "first_name": "first_name",
    "last_name": "last_name",
    "cf:loyalty_tier": "loyalty_tier",
}
PLACEHOLDER_LIST_ID = "00000000-0000-0000-0000-000000000000"
DEFAULTS: dict[str, Any] = {
    "customers": "/data/crm/customers.parquet",
    "segment": "vip",
    "segment_uri": "file:///data/segments/vip.parquet",
    "list_ids": [PLACEHOLDER_LIST_ID],
    "state_path": None,
}


def _config() -> dict[str, Any]:
    try:
        configured = Variable.get("constantcontact_segment_refresh", default=None, deserialize_json=True)
    except Exception:  # no metadata DB or API while parsing: keep the placeholders
        log.warning("Variable constantcontact_segment_refresh unreadable; using placeholders", exc_info=True)
        configured = None
    return {**DEFAULTS, **(configured or {})}


CONFIG = _config()
SEGMENT = Asset(uri=CONFIG["segment_uri"])
LISTS = [contact_list_asset(list_id) for list_id in CONFIG["list_ids"]]
START = pendulum.datetime(2025, 1, 1, tz="UTC")
TAGS = ["constantcontact", "example", "data-aware"]

with DAG(
    dag_id="constantcontact_segment_refresh",
    description="Rewrite a segment's Parquet file (producer of the segment Asset)",
    schedule=None,
    start_date=START,
    tags=TAGS,
    doc_md=__doc__,
):

    @task(outlets=[SEGMENT])
    def refresh_segment(*, outlet_events=None) -> dict[str, int]:
        """Keep one segment's rows of the customer table; replace the segment file in one step."""
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        with ObjectStoragePath(CONFIG["customers"]).open("rb") as handle:
            customers = pq.read_table(handle)
        rows = customers.filter(pc.equal(customers["segment"], CONFIG["segment"]))
        target = ObjectStoragePath(CONFIG["segment_uri"])
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write aside, then rename: the export never reads a half-written file.
        partial = target.parent / f".{target.name}.partial"
        with partial.open("wb") as handle:
            pq.write_table(rows, handle)
        partial.rename(target)
        counts = {"rows": rows.num_rows, "customers": customers.num_rows}
        outlet_events[SEGMENT].extra = counts  # counts only: the event is visible to every DAG
        return counts

    refresh_segment()


with DAG(
    dag_id="constantcontact_segment_refresh_export",
    description="Export the segment to Constant Contact whenever it was refreshed",
    schedule=[SEGMENT],
    start_date=START,
    max_active_runs=1,
    tags=TAGS,
    doc_md=__doc__,
):
    ConstantContactSegmentExportOperator(
        task_id="export_segment",
        source=CONFIG["segment_uri"],  # the Asset's URI: recorded as the task's inlet
        list_ids=CONFIG["list_ids"],
        field_mapping=FIELD_MAPPING,
        state_path=CONFIG["state_path"],
        # Wait for Constant Contact to process the import (in the triggerer), so that the list
        # events, and the DAGs they queue, come once the lists really hold the contacts.
        wait_for_completion=True,
        deferrable=True,
        poll_interval=10,
        timeout=3 * 3600,
        max_error_ratio=0.1,
        retries=2,  # imports are upserts by email: a retry is safe
        retry_delay=timedelta(minutes=5),
    )


with DAG(
    dag_id="constantcontact_list_updated",
    description="React to an export that changed a Constant Contact list (consumer of list Assets)",
    schedule=AssetAny(*LISTS),
    start_date=START,
    tags=TAGS,
    doc_md=__doc__,
):
    # One XCom (return_value), not one per key as the dict return type would make it: the keys
    # are list URIs ("constantcontact://lists/<id>"), and Airflow 3.0's execution API cannot
    # store an XCom whose key holds a "/" (404 Not Found: the task fails).
    @task(multiple_outputs=False)
    def report_list_update(*, triggering_asset_events=None) -> dict[str, list[dict]]:
        """Log each list event (source run and counts); return them for the XCom."""
        updates: dict[str, list[dict]] = {}
        for asset, events in triggering_asset_events.items():
            if not isinstance(asset, Asset):  # the same events again, under the export's AssetAlias
                continue
            for event in events:
                log.info(
                    "%s changed by %s.%s (run %s): %s",
                    asset.uri,
                    event.source_dag_id,
                    event.source_task_id,
                    event.source_run_id,
                    event.extra,
                )
                updates.setdefault(asset.uri, []).append(dict(event.extra))
        return updates

    report_list_update()
