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
