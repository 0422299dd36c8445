"""
### Many segment exports from one configuration, within Constant Contact's rate limit

`plan_exports` turns the Airflow Variable `constantcontact_many_segments` into one set of
arguments per export, `export_segment` is **mapped** over them (one task instance per segment,
`partial` + `expand_kwargs`), and **one** deferrable sensor waits for the import activities of
all of them (`all_activity_ids` flattens the mapped exports' `activity_ids`).

```json
{"source": "s3://aws_default@crm/customers/", "segment_column": "segment",
 "exports": [{"segments": ["gold"], "list_ids": ["<list id>"],
              "state_path": "s3://aws_default@crm/constantcontact-state/gold.parquet"},
             {"segments": ["silver"], "list_ids": ["<list id>", "<another list id>"]},
             {"segments": ["bronze"], "list_ids": ["<list id>"], "source": "/data/other.parquet"}]}
```

Each entry of `exports` may override `source` and `segment_column`; `segments` and `list_ids`
are required; `state_path` (one file per export) makes it send only what changed and never
re-add a contact who left a list (docs/export-state.md). Every export emits Asset events for
the lists it changed, as any export does.

**Rate limit.** Constant Contact allows 4 requests a second (and 10,000 a day) per application,
whatever the number of workers. The hook paces each process at the connection's "Requests per
second" (4 by default), so the exports share the Airflow pool `constantcontact_api`: with **one
slot**, one export talks to the API at a time and the application stays within 4 requests a
second. To run N exports at once, give the pool N slots and set the connection's
`max_requests_per_second` to 4/N. Create the pool before the first run (a task whose pool does
not exist is never scheduled):

    airflow pools set constantcontact_api 1 "Constant Contact API: 4 requests/s per application"

The sensor polls once every 10 s at first (backing off to 5 minutes), one request per poll for
all activities; it waits in the triggerer, so it holds no pool slot. See docs/data-aware.md.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, Variable, task

from airflow_provider_constantcontact.operators.constantcontact import ConstantContactSegmentExportOperator
from airflow_provider_constantcontact.sensors.constantcontact import ConstantContactImportSensor

POOL = "constantcontact_api"
# Constant Contact field -> Parquet column; "cf:<name>" is a custom field that must exist.
FIELD_MAPPING = {
    "email": "email",
    "first_name": "first_name",
    "last_name": "last_name",
    "cf:loyalty_tier": "loyalty_tier",
}

with DAG(
    dag_id="constantcontact_many_segments",
    description="Export several segments to their Constant Contact lists, one mapped task each",
    schedule="@daily",
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["constantcontact", "example"],
    doc_md=__doc__,
):

    @task
    def plan_exports() -> list[dict[str, Any]]:
        """One kwargs dict per export, from the Variable (read when the run starts, not at parse)."""
        config = Variable.get("constantcontact_many_segments", deserialize_json=True)
        exports = []
        for number, entry in enumerate(config["exports"]):
            missing = [key for key in ("segments", "list_ids") if not entry.get(key)]
            if missing:
                raise ValueError(f"exports[{number}] of constantcontact_many_segments lacks {missing}")
            exports.append(
                {
                    "source": entry.get("source", config.get("source")),
                    "segment_column": entry.get("segment_column", config.get("segment_column", "segment")),
                    "segments": list(entry["segments"]),
                    "list_ids": list(entry["list_ids"]),
                    # One export state per export (its own lists): only changes are sent, leavers stay out.
                    "state_path": entry.get("state_path"),
                }
            )
        return exports

    export = ConstantContactSegmentExportOperator.partial(
        task_id="export_segment",
        field_mapping=FIELD_MAPPING,
        wait_for_completion=False,  # the one sensor below waits for every export's imports
        # With a state_path: a weekly reconciliation re-reads each list and re-sends everyone.
        full_refresh="{{ logical_date.weekday() == 6 }}",
        pool=POOL,  # one slot: one export at a time, the application within 4 requests/s
        map_index_template="{{ task.segments | join(', ') }}",
        retries=2,  # imports are upserts by email: a retry is safe
        retry_delay=timedelta(minutes=5),
    ).expand_kwargs(plan_exports())

    @task
    def all_activity_ids(ids_per_export: list[list[str]]) -> list[str]:
        """The mapped exports' activity ids as one list."""
        return [activity_id for ids in ids_per_export for activity_id in ids]

    ConstantContactImportSensor(
        task_id="wait_for_imports",
        activity_ids=all_activity_ids(export.output["activity_ids"]),
        deferrable=True,
        poke_interval=10,
        max_poll_interval=300,
        timeout=timedelta(hours=3),
        max_error_ratio=0.1,
    )
