"""The export inside a real Airflow run (`airflow dags test`): templates, XComs, the Variable token store."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.airflow_compat import without_masker_echo
from tests.conftest import airflow_env
from tests.operators.conftest import write_parquet

DAG_FILE = textwrap.dedent(
    '''
    """Probe DAG: export a segment, then read the activity ids through export.output."""
    import pendulum

    from airflow.sdk import dag, task

    from airflow_provider_constantcontact.operators.constantcontact import (
        ConstantContactSegmentExportOperator,
    )


    @dag(
        schedule=None,
        start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
        catchup=False,
        params={"source": "", "list_id": "", "segment": "VIP"},
    )
    def cc_export_probe():
        export = ConstantContactSegmentExportOperator(
            task_id="export",
            source="{{ params.source }}",
            list_ids="{{ params.list_id }}",
            field_mapping={"email": "Email", "first_name": "First"},
            segment_column="Segment",
            segments=["{{ params.segment }}"],
            poll_interval=0.2,
            deferrable=False,
        )

        @task
        def check(activity_ids, summary):
            if not activity_ids or activity_ids != summary["activity_ids"]:
                raise RuntimeError(f"activity_ids XCom {activity_ids!r} != summary {summary!r}")
            if summary["items_total_count"] != 2 or summary["contacts_submitted"] != 2:
                raise RuntimeError(f"unexpected summary {summary!r}")

        check(export.output["activity_ids"], export.output)


    cc_export_probe()
    '''
)


def test_export_runs_in_airflow_dags_test(airflow_db, constantcontact_sandbox, tmp_path) -> None:
    source = write_parquet(
        tmp_path / "data" / "segment.parquet",
        {
            "Email": ["vip1@example.com", "other@example.com", "VIP2@example.com "],
            "First": ["Ada", "Bob", "Cy"],
            "Segment": ["VIP", "Other", "VIP"],
        },
    )
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "cc_export_probe.py").write_text(DAG_FILE)
    list_id = constantcontact_sandbox.list_ids["Newsletter"]
    env = airflow_env(
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW_CONN_CONSTANTCONTACT_DEFAULT=constantcontact_sandbox.connection_json(),
    )
    conf = json.dumps({"source": str(source), "list_id": list_id})
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "test", "cc_export_probe", "-c", conf],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    from airflow.models import DagRun

    (run,) = DagRun.find(dag_id="cc_export_probe")
    assert run.state == "success", output[-4000:]
    assert constantcontact_sandbox.list_members(list_id) == {
        "vip1@example.com": {"first_name": "Ada"},
        "vip2@example.com": {"first_name": "Cy"},
    }
    for secret in (constantcontact_sandbox.client_secret, "vip1@example.com", "other@example.com"):
        assert secret not in without_masker_echo(output)
