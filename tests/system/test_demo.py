"""The demo command's Python part (``scripts/demo.py``), run as ``scripts/demo`` runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.timeout(900)


def test_demo_runs_the_scheduled_dag_end_to_end_and_prints_the_summary():
    # Like a fresh shell: no Airflow settings inherited from the test session.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTEST"))}
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "demo.py"), "--rows", "1000", "--processing-rate", "40"],
        env=env,
        capture_output=True,
        text=True,
        timeout=850,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert "Export summary (XCom of export_segment):" in result.stdout
    assert "Import summary (XCom of wait_for_import):" in result.stdout
    submitted = int(re.search(r"contacts submitted\s+(\d+)", result.stdout).group(1))
    list_size = int(re.search(r"Sandbox contact list now holds (\d+) contacts", result.stdout).group(1))
    assert submitted == list_size > 0
    assert re.search(r"activity [0-9a-f-]{36}: completed, 100% done", result.stdout)
    assert re.search(r"duplicates dropped\s+[1-9]", result.stdout)
    assert "OK: the list holds exactly" in result.stdout
    # The sensor deferred and the trigger saw the import through.
    assert "Pausing task as DEFERRED" in result.stdout
    assert "Trigger completed" in result.stdout
    # The temporary Airflow home is gone.
    home = re.search(r"Airflow home (\S+) \(SQLite\)", result.stdout).group(1)
    assert not os.path.exists(home)
    # No personal data in what the demo prints.
    assert "@example.com" not in output.lower()


def test_demo_reads_the_wait_from_the_log_of_every_airflow_line(tmp_path):
    from tests.system.dag_runs import load_demo

    log = tmp_path / "airflow.log"
    log.write_text(
        # Airflow 3.1+: structlog lines only.
        "2026-12-04T19:05:41.825912Z [info     ] Constant Contact import 0.0% done (1 activities: "
        "1 initialized; 0/71 items, 0 errors) [airflow.task.operators]\n"
        "2026-12-04T19:05:41.826328Z [info     ] Pausing task as DEFERRED.      [task] dag_id=x\n"
        "2026-12-04T19:05:52.093331Z [info     ] [DAG TEST] Trigger completed   [airflow.sdk]\n"
        # Airflow 3.0's `dags test`: logging lines (a progress line twice, two formats) and
        # structlog lines with a space between date and time.
        "[2026-12-04 19:06:51,633] {activities.py:323} INFO - Constant Contact import 0.0% done "
        "(1 activities: 1 initialized; 0/71 items, 0 errors)\n"
        "[2026-12-04T19:06:51.633+0000] {activities.py:323} INFO - Constant Contact import 0.0% done "
        "(1 activities: 1 initialized; 0/71 items, 0 errors)\n"
        "2026-12-04 19:06:51 [info     ] Pausing task as DEFERRED.      [task] dag_id=x\n"
        "[2026-12-04T19:07:01.901+0000] {dag.py:1271} INFO - [DAG TEST] Trigger completed\n"
        "2026-12-04 19:07:02 [debug    ] Not the event: Pausing task as DEFERRED\n"
    )

    progress = "Constant Contact import 0.0% done (1 activities: 1 initialized; 0/71 items, 0 errors)"
    assert load_demo().wait_events(log) == [
        f"  19:05:41  {progress}",
        "  19:05:41  Pausing task as DEFERRED",
        "  19:05:52  [DAG TEST] Trigger completed",
        f"  19:06:51  {progress}",
        "  19:06:51  Pausing task as DEFERRED",
        "  19:07:01  [DAG TEST] Trigger completed",
    ]
