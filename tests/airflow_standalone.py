"""Run a real `airflow standalone` for end-to-end and browser tests.

``AirflowStandalone`` starts the API server, scheduler, triggerer and DAG processor in their own
process group, on a free 127.0.0.1 port, with a throw-away AIRFLOW_HOME and SQLite database, and
always kills the whole group on exit, even when start-up or the test fails::

    from tests.airflow_standalone import AirflowStandalone

    with AirflowStandalone(
        dags_folder=tmp_path / "dags",
        env={"AIRFLOW_CONN_CONSTANTCONTACT_DEFAULT": sandbox.connection_json()},
    ) as airflow:
        api = airflow.api_session()                  # authenticated requests.Session, relative URLs
        airflow.wait_for_dag("my_dag")
        run = airflow.run_dag("my_dag", conf={...})  # unpause, trigger, wait for a terminal state
        assert run["state"] == "success", airflow.log_tail()

Start-up takes about 30 s on a 2-CPU machine: share one instance per module where you can.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urljoin

import requests

from tests.conftest import airflow_env

TERMINAL_DAG_RUN_STATES = frozenset({"success", "failed"})


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AirflowStandaloneError(RuntimeError):
    """`airflow standalone` did not come up (the message ends with the tail of its log)."""


class ApiSession(requests.Session):
    """A requests session that resolves relative URLs against the API server and carries a bearer token."""

    def __init__(self, base_url: str, token: str, timeout: float = 30.0) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/") + "/"
        self.timeout = timeout
        self.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        """Send a request; ``url`` may be relative ("/api/v2/dags") and a default timeout applies."""
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, urljoin(self.base_url, str(url).lstrip("/")), *args, **kwargs)


class AirflowStandalone:
    """Context manager around one `airflow standalone` process group.

    :param dags_folder: ``[core] dags_folder``; an empty temporary folder when not given.
    :param env: extra environment (``AIRFLOW_CONN_*``, ``AIRFLOW__CORE__TEST_CONNECTION`` ...),
        applied last, so it can override anything set here.
    :param startup_timeout: seconds to wait for a healthy API server and all components.
    :param keep_home: leave the temporary AIRFLOW_HOME (logs, DB) behind for debugging.
    """

    def __init__(
        self,
        *,
        dags_folder: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        startup_timeout: float = 240.0,
        keep_home: bool = False,
    ) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="cc-airflow-standalone-"))
        self.dags_folder = Path(dags_folder) if dags_folder is not None else self.home / "dags"
        self.dags_folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.home / "standalone.log"
        self.task_logs_folder = self.home / "logs"
        self.password_file = self.home / "simple_auth_manager_passwords.json.generated"
        self.startup_timeout = startup_timeout
        self.keep_home = keep_home
        settings = {
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.password_file),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            # One API server worker: Airflow 3.0 starts four, which on 2 busy cores keep dying at
            # start-up; one serves a test's few requests.
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            # The log servers default to fixed ports (8793/8794): two instances would collide.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.task_logs_folder),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
            "NO_COLOR": "1",
        }
        settings.update(env or {})
        self.env = airflow_env(**settings)
        self._process: subprocess.Popen[bytes] | None = None
        self._token: str | None = None
        self.startup_seconds: float | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> AirflowStandalone:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start `airflow standalone` and wait until the API answers and every component is healthy."""
        started = time.monotonic()
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [str(Path(sys.executable).parent / "airflow"), "standalone"],
                env=self.env,
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() kills every component at once
            )
        try:
            self._wait_until_ready(started + self.startup_timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started

    def stop(self) -> None:
        """Kill the whole process group (SIGTERM, then SIGKILL), then remove the temporary home."""
        process, self._process = self._process, None
        if process is not None:
            self._signal_group(process, signal.SIGTERM)
            deadline = time.monotonic() + 20
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=20)
            # Components can outlive the standalone parent: give them the rest of the grace period,
            # then finish off whatever is left of the group.
            while self._signal_group(process, 0) and time.monotonic() < deadline:
                time.sleep(0.2)
            self._signal_group(process, signal.SIGKILL)
            process.wait(timeout=10)
        if not self.keep_home:
            shutil.rmtree(self.home, ignore_errors=True)

    @staticmethod
    def _signal_group(process: subprocess.Popen[bytes], sig: int) -> bool:
        """Send ``sig`` to the process group; False when the group no longer exists."""
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def _wait_until_ready(self, deadline: float) -> None:
        last_problem = "no answer yet"
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise AirflowStandaloneError(
                    f"airflow standalone exited with {self._process.returncode}\n{self.log_tail()}"
                )
            try:
                health = requests.get(f"{self.base_url}/api/v2/monitor/health", timeout=5).json()
                unhealthy = [
                    name
                    for name in ("metadatabase", "scheduler", "triggerer", "dag_processor")
                    if (health.get(name) or {}).get("status") != "healthy"
                ]
                if not unhealthy and self.password_file.exists():
                    return
                last_problem = f"not healthy yet: {', '.join(unhealthy) or 'password file missing'}"
            except (requests.RequestException, ValueError) as exc:
                last_problem = type(exc).__name__
            time.sleep(1)
        raise AirflowStandaloneError(
            f"airflow standalone not ready after {self.startup_timeout:.0f}s ({last_problem})\n"
            f"{self.log_tail()}"
        )

    # -- access ----------------------------------------------------------------------------

    @property
    def admin_password(self) -> str:
        """The generated password of the `admin` user (simple auth manager)."""
        return json.loads(self.password_file.read_text())["admin"]

    def token(self) -> str:
        """A bearer token for /api/v2 (``POST /auth/token`` as admin), fetched once."""
        if self._token is None:
            response = requests.post(
                f"{self.base_url}/auth/token",
                json={"username": "admin", "password": self.admin_password},
                timeout=30,
            )
            response.raise_for_status()
            self._token = response.json()["access_token"]
        return self._token

    def api_session(self) -> ApiSession:
        """An authenticated session; relative URLs resolve against ``base_url`` ("/api/v2/...")."""
        return ApiSession(self.base_url, self.token())

    def airflow(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run an `airflow` CLI command against this instance's home and database."""
        return subprocess.run(
            [str(Path(sys.executable).parent / "airflow"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def log_tail(self, lines: int = 80) -> str:
        """The last lines of the combined standalone log (API server, scheduler, triggerer ...)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def task_log_files(self) -> list[Path]:
        """Every task log written so far (``<base_log_folder>/dag_id=.../attempt=N.log``)."""
        return sorted(self.task_logs_folder.glob("dag_id=*/**/*.log"))

    # -- DAGs ------------------------------------------------------------------------------

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> dict[str, Any]:
        """Wait until the DAG processor has parsed ``dag_id``; fail with the import errors otherwise."""
        api = self.api_session()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = api.get(f"/api/v2/dags/{dag_id}")
            if response.status_code == 200:
                return response.json()
            time.sleep(2)
        errors = api.get("/api/v2/importErrors").json()
        raise AirflowStandaloneError(
            f"DAG {dag_id!r} not parsed after {timeout:.0f}s; import errors: {errors}"
        )

    def run_dag(
        self, dag_id: str, *, conf: Mapping[str, Any] | None = None, timeout: float = 300
    ) -> dict[str, Any]:
        """Unpause and trigger ``dag_id``, wait for the run to finish, return the DAG run (JSON)."""
        api = self.api_session()
        api.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": False}).raise_for_status()
        response = api.post(
            f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": dict(conf or {})}
        )
        response.raise_for_status()
        run_id = response.json()["dag_run_id"]
        return self.wait_for_dag_run(dag_id, run_id, timeout=timeout)

    def wait_for_dag_run(self, dag_id: str, run_id: str, *, timeout: float = 300) -> dict[str, Any]:
        """Poll a DAG run until it is ``success`` or ``failed``; raise on timeout."""
        api = self.api_session()
        deadline = time.monotonic() + timeout
        run: dict[str, Any] = {}
        while time.monotonic() < deadline:
            run = api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()
            if run.get("state") in TERMINAL_DAG_RUN_STATES:
                return run
            time.sleep(2)
        raise AirflowStandaloneError(
            f"DAG run {run_id!r} still {run.get('state')!r} after {timeout:.0f}s\n{self.log_tail()}"
        )

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The task instances of one DAG run (JSON), to assert on states or find the failing task."""
        response = self.api_session().get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        response.raise_for_status()
        return response.json()["task_instances"]
