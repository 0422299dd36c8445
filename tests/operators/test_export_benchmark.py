"""The export benchmark keeps working: a tiny run of the script, sandbox sub-process included."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT, airflow_env

# A Python process that loads Airflow and runs the export, and the sandbox in another: slow.
pytestmark = pytest.mark.system


def test_benchmark_script_runs_with_a_tiny_segment(tmp_path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "benchmarks" / "export_benchmark.py"),
            "--rows",
            "3000",
            "--workdir",
            str(tmp_path),
            "--json",
        ],
        env=airflow_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    export, naive, dry = figures["export"], figures["naive"], figures["dry_run"]
    assert export["rows_read"] == 3000
    assert export["contacts"] == naive["contacts"] == dry["contacts"]
    assert export["contacts"] + export["duplicates"] + sum(export["rejected"].values()) == 3000
    assert export["rejected"]["missing_email"] > 0
    assert export["rejected"]["invalid_email"] > 0
    assert export["duplicates"] > 0
    assert export["import_requests"] == 1
    assert export["peak_rss_mb"] > 0
    assert figures["speedup_vs_naive"] > 0
    # the sandbox answered the import before applying it; reading the activity applied it
    assert 0 < export["import_post_s"] <= export["wall_s"] <= export["applied_s"]
