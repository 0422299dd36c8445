"""Helpers for running the example DAGs on real Airflow against the sandbox."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import ModuleType

from tests.airflow_compat import AIRFLOW
from tests.conftest import REPO_ROOT, airflow_env

EXAMPLE_DAGS = REPO_ROOT / "example_dags"


def load_demo() -> ModuleType:
    """``scripts/demo.py`` as a module (segment generator, XCom reader, the demo's main)."""
    spec = importlib.util.spec_from_file_location("constantcontact_demo", REPO_ROOT / "scripts" / "demo.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def airflow_dags_test(
    dag_id: str,
    *,
    env: dict[str, str],
    conf: str | None = None,
    timeout: float = 600,
    dags_folder: Path = EXAMPLE_DAGS,
) -> subprocess.CompletedProcess:
    """``airflow dags test <dag_id>`` in a sub-process sharing the test session's metadata DB."""
    command = [sys.executable, "-m", "airflow", "dags", "test", dag_id]
    if conf is not None:
        command += ["--conf", conf]
    return subprocess.run(
        command,
        env=airflow_env(AIRFLOW__CORE__DAGS_FOLDER=str(dags_folder), **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def dags_test_killed_when(
    dag_id: str,
    conf: dict,
    *,
    env: dict[str, str],
    dags_folder: Path,
    log_file: Path,
    reached: threading.Event,
    release: threading.Event,
) -> None:
    """``airflow dags test <dag_id> --conf`` SIGKILLed (its whole process group) once ``reached``
    is set, typically by a sandbox hook holding a request in flight until ``release``.

    ``release`` is set afterwards whatever happens, so the held request reaches the sandbox
    after its client died (as a request in flight does when a worker is killed).
    """
    command = [sys.executable, "-m", "airflow", "dags", "test", dag_id, "--conf", json.dumps(conf)]
    full_env = airflow_env(AIRFLOW__CORE__DAGS_FOLDER=str(dags_folder), **env)
    with log_file.open("w") as log:
        killed = subprocess.Popen(
            command, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            assert reached.wait(240), log_file.read_text()[-3000:]
            os.killpg(killed.pid, signal.SIGKILL)
            killed.wait(30)
        finally:
            release.set()
            if killed.poll() is None:
                os.killpg(killed.pid, signal.SIGKILL)
                killed.wait(30)


def register_assets_for_dags_test(*, env: dict[str, str], dags_folder: Path = EXAMPLE_DAGS) -> None:
    """On Airflow 3.0, write the DAGs to the metadata DB first, as its DAG processor would.

    Airflow 3.0's ``dags test`` does not, so the Assets of a task's inlets and outlets stay
    inactive and the task fails (``AirflowInactiveAssetInInletOrOutletException``);
    ``airflow dags reserialize`` registers and activates them. From 3.1 ``dags test`` does it.
    """
    if AIRFLOW >= (3, 1):
        return
    subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "reserialize"],
        env=airflow_env(AIRFLOW__CORE__DAGS_FOLDER=str(dags_folder), **env),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )


def latest_run(dag_id: str) -> tuple[str, str]:
    """(run_id, state) of the newest run of ``dag_id`` in the metadata DB."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        row = session.execute(
            select(DagRun.run_id, DagRun.state)
            .where(DagRun.dag_id == dag_id)
            .order_by(DagRun.id.desc())
            .limit(1)
        ).one()
        return row[0], str(row[1])


def task_states(dag_id: str, run_id: str) -> dict[str, str]:
    """task_id -> state of every task instance of one run."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(TaskInstance.task_id, TaskInstance.state).where(
                TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id
            )
        ).all()
        return {task_id: str(state) for task_id, state in rows}


def describe(result: subprocess.CompletedProcess, lines: int = 80) -> str:
    """The tail of a finished command's output, for assertion messages."""
    output = (result.stdout or "") + (result.stderr or "")
    return "\n".join(output.splitlines()[-lines:])


def unwrapped(output: str) -> str:
    """The output as one line, without colours or frames: Airflow 3.0 prints a failed task's
    traceback with rich, which wraps the exception's message inside a framed, coloured box."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", output)
    return " ".join(" ".join(line.strip(" │╭╮╰╯─❱") for line in plain.splitlines()).split())


def searchable_output(result: subprocess.CompletedProcess) -> str:
    """A run's stdout and stderr as printed, then once more unwrapped: messages can be found
    whether or not the Airflow line framed and wrapped them."""
    output = (result.stdout or "") + (result.stderr or "")
    return f"{output}\n{unwrapped(output)}"
