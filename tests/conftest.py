"""Test-wide set-up: an isolated Airflow home and, on demand, a migrated SQLite metadata DB.

The environment is fixed here, before any test module imports Airflow, because Airflow reads
its configuration once at import time.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography.fernet import Fernet

REPO_ROOT = Path(__file__).resolve().parents[1]
AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="cc-airflow-home-"))

os.environ.update(
    {
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{AIRFLOW_HOME / 'airflow.db'}",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "example_dags"),
        "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
    }
)
# No test may inherit a connection or variable from the developer's shell.
for _name in [n for n in os.environ if n.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_"))]:
    del os.environ[_name]

pytest_plugins = ["airflow_provider_constantcontact.sandbox.pytest_plugin", "tests.system_marker"]

if TYPE_CHECKING:  # imported for real only inside functions: Airflow must see the env above first
    from airflow_provider_constantcontact.hooks.constantcontact import ConstantContactHook
    from airflow_provider_constantcontact.sandbox import ConstantContactSandbox

#: The connection id the sensors, triggers and operators use when given none.
DEFAULT_CONN_ID = "constantcontact_default"


#: Test folders whose tests run real Airflow processes (a minute or more each on 2 cores).
SLOW_TEST_FOLDERS = {REPO_ROOT / "tests" / "system", REPO_ROOT / "tests" / "ui"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the slow folders first (in file order otherwise): parallel workers then finish together
    on short tests instead of one worker ending alone on a long system test."""
    items.sort(key=lambda item: not SLOW_TEST_FOLDERS.intersection(item.path.parents))


def airflow_env(**overrides: str) -> dict[str, str]:
    """Environment for an `airflow` sub-process sharing this session's home and database."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(overrides)
    return env


def migrate_airflow_db(database: Path) -> None:
    """``airflow db migrate`` of the SQLite file ``database`` (5 to 10 s)."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=airflow_env(AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{database}"),
        check=True,
        capture_output=True,
        timeout=300,
    )


@pytest.fixture(scope="session")
def airflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Give this session a migrated SQLite metadata DB; return the Airflow home holding it.

    Under pytest-xdist the first worker that needs one migrates a template for the whole run
    (the others wait on a file lock) and every worker copies it: one migration per run, not one
    per worker. Without workers the session's own DB is migrated in place.
    """
    database = AIRFLOW_HOME / "airflow.db"
    run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if run_id is None:
        migrate_airflow_db(database)
        return AIRFLOW_HOME
    shared = tmp_path_factory.getbasetemp().parent  # the same directory for every worker of the run
    template = shared / f"airflow-db-template-{run_id}.db"
    with (shared / f"{template.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not template.exists():
            partial = template.with_suffix(".partial")  # a failed migration leaves no template
            migrate_airflow_db(partial)
            partial.rename(template)
    shutil.copyfile(template, database)
    return AIRFLOW_HOME


@pytest.fixture(scope="session", autouse=True)
def _remove_airflow_home() -> Iterator[None]:
    yield
    shutil.rmtree(AIRFLOW_HOME, ignore_errors=True)


# ------------------------------------------------------------------------------------ sandbox
@pytest.fixture
def sandbox(constantcontact_sandbox: ConstantContactSandbox) -> ConstantContactSandbox:
    """The plugin's default sandbox (limits off, "Newsletter" list, "loyalty_tier" field)."""
    return constantcontact_sandbox


@pytest.fixture
def default_conn_sandbox(
    constantcontact_sandbox: ConstantContactSandbox, monkeypatch: pytest.MonkeyPatch, airflow_db: Path
) -> ConstantContactSandbox:
    """The default sandbox, reachable as connection ``constantcontact_default`` (from the env).

    With a migrated metadata DB: hooks built from the connection id keep tokens in a Variable.
    """
    monkeypatch.setenv(f"AIRFLOW_CONN_{DEFAULT_CONN_ID.upper()}", constantcontact_sandbox.connection_json())
    return constantcontact_sandbox


def start_imports(
    sandbox: ConstantContactSandbox,
    hook: ConstantContactHook | None = None,
    count: int = 1,
    contacts_each: int = 5,
) -> list[str]:
    """Start ``count`` imports of ``contacts_each`` contacts into a new list; their activity ids.

    ``hook`` defaults to one on the ``constantcontact_default`` connection.
    """
    from airflow_provider_constantcontact.hooks.constantcontact import ConstantContactHook

    hook = hook or ConstantContactHook(DEFAULT_CONN_ID)
    list_id = sandbox.create_list(f"Imports {time.monotonic_ns()}")
    return [
        hook.import_contacts([{"email": f"c{n}.{i}@example.com"} for i in range(contacts_each)], [list_id])[
            "activity_id"
        ]
        for n in range(count)
    ]
