"""The ``system`` marker: slow tests are marked, and a test that is not marked cannot be slow that way.

``pytest -m "not system"`` is the contributor's fast loop. A test is ``system`` when it lives in
``tests/system/`` or ``tests/ui/`` (``airflow dags test``, ``airflow standalone``, the demo, the
browser, the package build) or uses a fixture that starts an Airflow process
(:data:`PROCESS_FIXTURES`); it is marked here at collection, so nobody has to remember to. Any
other test that starts an ``airflow`` command fails, saying how to mark it, so a forgotten
marker cannot slip a slow test into the fast loop.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent
SYSTEM_FOLDERS = {"system", "ui"}
#: Fixtures that start Airflow processes (``airflow db migrate``): their users are system tests.
PROCESS_FIXTURES = {"airflow_db"}


def is_airflow_command(args: str | bytes | os.PathLike[str] | Sequence[Any]) -> bool:
    """Whether a ``subprocess`` command runs the Airflow CLI (``airflow ...``, ``python -m airflow ...``)."""
    if isinstance(args, str | bytes | os.PathLike):
        argv = shlex.split(os.fsdecode(args))
    else:
        argv = [os.fsdecode(arg) for arg in args]
    if not argv:
        return False
    if Path(argv[0]).name == "airflow":
        return True
    return any(flag == "-m" and module == "airflow" for flag, module in zip(argv, argv[1:], strict=False))


@pytest.hookimpl(tryfirst=True)  # before -m selects on the markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    system_folders = {TESTS / folder for folder in SYSTEM_FOLDERS}
    for item in items:
        in_system_folder = not system_folders.isdisjoint(item.path.resolve().parents)
        uses_processes = PROCESS_FIXTURES & set(getattr(item, "fixturenames", ()))
        if in_system_folder or uses_processes:
            item.add_marker(pytest.mark.system)


@pytest.fixture(autouse=True)
def _no_airflow_process_outside_system_tests(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fail a test that is not marked ``system`` as soon as it starts an ``airflow`` command."""
    if request.node.get_closest_marker("system"):
        return
    start = subprocess.Popen.__init__

    def guarded(self: subprocess.Popen[Any], args: Any, *more: Any, **kwargs: Any) -> None:
        if is_airflow_command(args):
            pytest.fail(
                f"{request.node.nodeid} starts an Airflow process ({args!r}) but is not marked system: "
                "add `pytestmark = pytest.mark.system` to its module or move it under tests/system/, "
                "so that `pytest -m 'not system'` stays fast."
            )
        start(self, args, *more, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", guarded)
