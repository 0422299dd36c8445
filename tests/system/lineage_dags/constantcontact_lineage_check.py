"""A one-task export DAG for the lineage tests, configured through the environment.

``CC_LINEAGE_SOURCE`` (a path or URI), ``CC_LINEAGE_LIST_IDS`` (comma-separated) and
``CC_LINEAGE_PLAN_ONLY`` ("1" for a plan-only run) are read when the file is parsed, so that the source
is a literal URI (not a template) and becomes the task's inlet.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG

from airflow_provider_constantcontact.operators.constantcontact import ConstantContactSegmentExportOperator

with DAG(
    dag_id="constantcontact_lineage_check",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
):
    ConstantContactSegmentExportOperator(
        task_id="export_segment",
        source=os.environ.get("CC_LINEAGE_SOURCE", "/nonexistent/segment.parquet"),
        list_ids=os.environ.get("CC_LINEAGE_LIST_IDS", "00000000-0000-0000-0000-000000000000").split(","),
        field_mapping={"email": "email", "first_name": "first_name", "cf:loyalty_tier": "loyalty_tier"},
        segment_column="segment",
        segments=["vip"],
        plan_only=os.environ.get("CC_LINEAGE_PLAN_ONLY") == "1",
        wait_for_completion=False,
    )
