"""The fast loop stays fast: slow tests are marked ``system``, and an unmarked one cannot start Airflow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, airflow_env
from tests.system_marker import is_airflow_command


def test_airflow_commands_are_recognised() -> None:
    python = sys.executable
    assert is_airflow_command([python, "-m", "airflow", "dags", "test", "x"])
    assert is_airflow_command(["/venv/bin/airflow", "standalone"])
    assert is_airflow_command(Path("/venv/bin/airflow"))
    assert is_airflow_command("airflow db migrate")
    assert not is_airflow_command([python, "-m", "airflow_provider_constantcontact.sandbox"])
    assert not is_airflow_command([python, "-c", "import airflow"])
    assert not is_airflow_command(["/venv/bin/constantcontact-auth", "pkce"])
    assert not is_airflow_command([])


def test_an_unmarked_test_that_starts_airflow_fails_before_the_process_starts() -> None:
    with pytest.raises(
        pytest.fail.Exception, match=r"not marked system: add `pytestmark = pytest.mark.system`"
    ):
        subprocess.run([sys.executable, "-m", "airflow", "version"], check=False)
    # Other processes still start.
    assert subprocess.run([sys.executable, "-c", "pass"], check=False).returncode == 0


@pytest.mark.system  # runs pytest's collection in a sub-process (imports Airflow): about 20 s
def test_slow_tests_are_left_out_of_the_fast_loop() -> None:
    """Through pytest's own selection: the folders, the airflow_db users and explicit marks."""
    files = [
        "tests/system/test_packaging.py",  # by folder
        "tests/operators/test_constantcontact_dag.py",  # airflow_db
        # airflow_db through the module's `variables` fixture
        "tests/hooks/test_token_store.py::test_outside_a_task_records_go_to_the_metadata_db",
        "tests/operators/test_export_benchmark.py",  # pytestmark
        "tests/test_declared_imports.py",  # fast: stays
    ]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
        + ["-m", "not system", *files],
        cwd=REPO_ROOT,
        env=airflow_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    collected = {line.split("::")[0] for line in result.stdout.splitlines() if "::" in line}
    assert collected == {"tests/test_declared_imports.py"}, result.stdout + result.stderr
