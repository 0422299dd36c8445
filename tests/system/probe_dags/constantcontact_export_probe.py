"""Probe DAGs for the "nothing the user owns is damaged" tests: every export parameter from a conf.

Four DAGs, one per way a user runs the export: the conf rendered as native objects or as text
(``render_template_as_native_obj``), and waiting in the worker or deferring to the triggerer.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_provider_constantcontact.operators.constantcontact import ConstantContactSegmentExportOperator

PARAMS = {
    "source": "",
    "list_ids": [],
    "list_names": [],
    "create_missing_lists": False,
    "field_mapping": {"email": "Email"},
    "sync_mode": "upsert",
    "max_removal_ratio": 1.0,
    "rejects_path": None,
    "removals_path": None,
    "plan_only": False,
}

for native in (True, False):
    for deferrable in (False, True):
        dag_id = f"cc_probe_{'native' if native else 'text'}_{'deferred' if deferrable else 'waited'}"
        with DAG(
            dag_id=dag_id,
            schedule=None,
            start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
            render_template_as_native_obj=native,
            params=PARAMS,
        ):
            ConstantContactSegmentExportOperator(
                task_id="export",
                **{name: f"{{{{ params.{name} }}}}" for name in PARAMS},
                deferrable=deferrable,
                poll_interval=0.2,
                timeout=120,
            )
