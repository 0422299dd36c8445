"""
### Daily export of a customer segment to a Constant Contact list

Every day, `export_segment` reads the Parquet segment, keeps the rows of the chosen segment,
cleans and de-duplicates them, and submits them to Constant Contact's bulk import without
waiting. `wait_for_import` then waits for the import activities **in the triggerer**
(deferrable: no worker slot is held while Constant Contact processes the import, which can
take up to an hour) and returns the import summary.

**Inputs** come from the Airflow Variable `constantcontact_segment_export`, a JSON object, so
that one deployment can point the same DAG at its own data without editing code:

```json
{"source": "s3://aws_default@my-bucket/segments/customers/",
 "list_ids": ["<contact list id>"], "segment_column": "segment", "segments": ["vip"],
 "state_path": "s3://aws_default@my-bucket/constantcontact-state/vip.parquet"}
```

`state_path` is where the export remembers what it put into the list: each day only the
contacts that changed are sent, and a contact who left the list (an unsubscribe link, or
removed in Constant Contact) is never put back. On Sundays `full_refresh` re-reads the list and
re-sends everyone (still never those who left). Without `state_path` the whole segment is
sent every day and leavers are re-added.

`source` (a Parquet file, folder or glob; a local path or an object storage URI, whose user part
names the Airflow connection holding its credentials, as above) and `list_ids` are required;
without `segment_column` and `segments` every row is exported. Set the Variable in the UI
(Admin > Variables), with `airflow variables set`, from a secrets backend, or as the
environment variable `AIRFLOW_VAR_CONSTANTCONTACT_SEGMENT_EXPORT`.
The Constant Contact connection is `constantcontact_default`.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from airflow_provider_constantcontact.operators.constantcontact import ConstantContactSegmentExportOperator
from airflow_provider_constantcontact.sensors.constantcontact import ConstantContactImportSensor

# Constant Contact field -> Parquet column. Adapt to the segment's schema; "cf:<name>" is a custom
# field, which must already exist in the Constant Contact account.
FIELD_MAPPING = {
    "email": "email",
    "first_name": "first_name",
    "last_name": "last_name",
    "cf:loyalty_tier": "loyalty_tier",
}

with DAG(
    dag_id="constantcontact_segment_export",
    description="Daily export of a Parquet customer segment to a Constant Contact list",
    schedule="@daily",
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    # Lists and None keep their type when rendered from the JSON Variable.
    render_template_as_native_obj=True,
    tags=["constantcontact", "example"],
    doc_md=__doc__,
) as dag:
    export = ConstantContactSegmentExportOperator(
        task_id="export_segment",
        source="{{ var.json.constantcontact_segment_export.source }}",
        list_ids="{{ var.json.constantcontact_segment_export.list_ids }}",
        field_mapping=FIELD_MAPPING,
        segment_column="{{ var.json.constantcontact_segment_export.get('segment_column') }}",
        segments="{{ var.json.constantcontact_segment_export.get('segments') }}",
        state_path="{{ var.json.constantcontact_segment_export.get('state_path') }}",
        # A weekly reconciliation: re-read the list in full and re-send everyone.
        full_refresh="{{ logical_date.weekday() == 6 }}",
        # The hook already retries throttling, 5xx and network errors. Imports are upserts by
        # email, so task retries (retries=...) are safe to add too.
        wait_for_completion=False,
    )

    ConstantContactImportSensor(
        task_id="wait_for_import",
        activity_ids=export.output["activity_ids"],
        deferrable=True,
        # First poll after 10 s, then backing off to one poll every 5 minutes: a one-hour
        # import costs about 20 requests of the 10,000 a day.
        poke_interval=10,
        max_poll_interval=300,
        timeout=timedelta(hours=3),
        # Fail the run when Constant Contact rejected more than 10% of the contacts sent.
        max_error_ratio=0.1,
    )
