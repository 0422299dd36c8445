"""Issue 18 §2: output paths never destroy the input or each other (``airflow dags test`` with a conf).

Each test fails on the code before the fix: the source was overwritten, read back as data,
replaced by another output, or a hidden file of rejected rows was left behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.conftest import airflow_env
from tests.operators.conftest import write_parquet
from tests.system.dag_runs import describe
from tests.system.probe_runs import IMPORT_PATH, PROBE_DAGS, changes_made, output_of, run_probe

MAPPING = {"email": "Email", "first_name": "First"}


def segment(path: Path, rows: int = 100) -> Path:
    """``rows`` valid contacts and two rows that are rejected (so a rejects file has rows)."""
    emails = [f"c{n}@example.com" for n in range(rows)] + ["not-an-email", None]
    return write_parquet(path, {"Email": emails, "First": [f"F{n}" for n in range(rows + 2)]})


@pytest.mark.parametrize("spelling", ["dot-dot", "symlink", "relative"])
def test_rejects_path_naming_the_source_file_another_way_is_refused(
    airflow_db: Path, constantcontact_sandbox: Any, tmp_path: Path, spelling: str
) -> None:
    source = segment(tmp_path / "data" / "segment.parquet")
    (tmp_path / "link").symlink_to(tmp_path / "data")
    rejects = {
        "dot-dot": str(tmp_path / "data" / ".." / "data" / "segment.parquet"),
        "symlink": str(tmp_path / "link" / "segment.parquet"),
        "relative": os.path.relpath(source),  # the worker runs in this process's working folder
    }[spelling]
    list_id = constantcontact_sandbox.list_ids["Newsletter"]

    result, state, _ = run_probe(
        "cc_probe_text_waited",
        constantcontact_sandbox,
        {"source": str(source), "list_ids": [list_id], "field_mapping": MAPPING, "rejects_path": rejects},
    )

    assert state == "failed", describe(result)
    assert "rejects_path" in output_of(result)
    assert "lies inside the segment source" in output_of(result)
    assert pq.read_table(source).num_rows == 102  # the segment is intact
    assert changes_made(constantcontact_sandbox) == []


def test_rejects_path_through_a_symlink_into_a_folder_source_is_refused(
    airflow_db: Path, constantcontact_sandbox: Any, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    segment(data / "part-0.parquet")
    (tmp_path / "link").symlink_to(data)
    list_id = constantcontact_sandbox.list_ids["Newsletter"]

    result, state, _ = run_probe(
        "cc_probe_native_waited",
        constantcontact_sandbox,
        {
            "source": str(data),
            "list_ids": [list_id],
            "field_mapping": MAPPING,
            "rejects_path": str(tmp_path / "link" / "rejects.parquet"),
        },
    )

    assert state == "failed", describe(result)
    assert "lies inside the segment source" in output_of(result)
    assert sorted(p.name for p in data.iterdir()) == ["part-0.parquet"]
    assert changes_made(constantcontact_sandbox) == []


def test_removals_and_rejects_naming_one_file_are_refused_before_any_change(
    airflow_db: Path, constantcontact_sandbox: Any, tmp_path: Path
) -> None:
    source = segment(tmp_path / "data" / "segment.parquet", rows=3)
    list_id = constantcontact_sandbox.list_ids["Newsletter"]
    constantcontact_sandbox.add_list_members(list_id, ["c0@example.com", "left@example.com"])
    out = tmp_path / "out"

    result, state, _ = run_probe(
        "cc_probe_native_waited",
        constantcontact_sandbox,
        {
            "source": str(source),
            "list_ids": [list_id],
            "field_mapping": MAPPING,
            "sync_mode": "mirror",
            "rejects_path": str(out / "run.parquet"),
            "removals_path": f"{out}/sub/../run.parquet",
        },
    )

    assert state == "failed", describe(result)
    assert "rejects_path" in output_of(result)
    assert "name the same place" in output_of(result)
    assert changes_made(constantcontact_sandbox) == []
    assert constantcontact_sandbox.list_member_emails(list_id) == {"c0@example.com", "left@example.com"}
    assert not (out / "run.parquet").exists()


def test_rejects_path_naming_an_existing_folder_without_a_slash_is_refused(
    airflow_db: Path, constantcontact_sandbox: Any, tmp_path: Path
) -> None:
    source = segment(tmp_path / "data" / "segment.parquet", rows=3)
    out = tmp_path / "out"
    out.mkdir()
    list_id = constantcontact_sandbox.list_ids["Newsletter"]

    result, state, _ = run_probe(
        "cc_probe_text_waited",
        constantcontact_sandbox,
        {"source": str(source), "list_ids": [list_id], "field_mapping": MAPPING, "rejects_path": str(out)},
    )

    assert state == "failed", describe(result)
    assert f"rejects_path {out} is an existing folder: end it with '/'" in output_of(result)
    assert list(out.iterdir()) == []
    assert changes_made(constantcontact_sandbox) == []


def _wait_for(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_a_run_killed_while_writing_rejects_leaves_no_hidden_file_after_the_next_run(
    airflow_db: Path, constantcontact_sandbox: Any, tmp_path: Path
) -> None:
    source = segment(tmp_path / "data" / "segment.parquet", rows=50)
    out = tmp_path / "out"
    list_id = constantcontact_sandbox.list_ids["Newsletter"]
    conf = {
        "source": str(source),
        "list_ids": [list_id],
        "field_mapping": MAPPING,
        "rejects_path": f"{out}/",
    }
    # The import answers 503: the task retries (1 s, then 2 s) with its rejects file open.
    constantcontact_sandbox.fail_next(count=3, status=503, path_prefix=IMPORT_PATH)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow",
            "dags",
            "test",
            "cc_probe_native_waited",
            "--conf",
            json.dumps(conf),
        ],
        env=airflow_env(
            AIRFLOW__CORE__DAGS_FOLDER=str(PROBE_DAGS),
            AIRFLOW_CONN_CONSTANTCONTACT_DEFAULT=constantcontact_sandbox.connection_json(),
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        hidden = lambda: [p.name for p in out.iterdir() if p.name.startswith(".")] if out.exists() else []  # noqa: E731
        assert _wait_for(
            lambda: hidden() and constantcontact_sandbox.request_log[-1].path == IMPORT_PATH, 120
        )
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the worker dies: nothing of its own can clean up
        process.wait(timeout=30)
    assert hidden(), "the killed run's temporary file is the case under test"

    result, state, summary = run_probe("cc_probe_native_waited", constantcontact_sandbox, conf)

    assert state == "success", describe(result)
    assert summary is not None
    assert summary["rejects_written"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["rejects.parquet"]
    assert pq.read_table(out / "rejects.parquet").num_rows == 2
