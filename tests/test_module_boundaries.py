"""Where things live: API facts in constants.py, Airflow internals in _compat.py, metadata apart."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import airflow_provider_constantcontact

PACKAGE = Path(airflow_provider_constantcontact.__file__).parent
#: Modules past the public Task SDK; only _compat.py may import them in hooks and the CLI.
AIRFLOW_INTERNAL_MODULES = ("airflow.models", "airflow.utils", "airflow.sdk.execution_time")


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    return modules


def runtime_modules() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if p.name != "get_provider_info.py"]


def test_no_runtime_module_imports_the_provider_metadata():
    importers = [
        str(p.relative_to(PACKAGE))
        for p in runtime_modules()
        if any(m.endswith("get_provider_info") for m in imported_modules(p))
    ]
    assert importers == []


def test_constants_import_no_airflow():
    code = (
        "import sys, airflow_provider_constantcontact.constants; "
        "sys.exit(any(m == 'airflow' or m.startswith('airflow.') for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.mark.parametrize("folder", ["hooks", "cli"])
def test_airflow_internals_are_used_only_in_compat(folder):
    offenders = [
        f"{p.relative_to(PACKAGE)}: {module}"
        for p in sorted((PACKAGE / folder).rglob("*.py"))
        for module in imported_modules(p)
        if module.startswith(AIRFLOW_INTERNAL_MODULES)
    ] + [
        str(p.relative_to(PACKAGE))
        for p in (PACKAGE / folder).rglob("*.py")
        if "SUPERVISOR_COMMS" in p.read_text()
    ]
    assert offenders == []


def test_compat_holds_the_internals():
    modules = imported_modules(PACKAGE / "_compat.py")
    assert {"airflow.models", "airflow.models.connection", "airflow.utils.session"} <= modules
    assert "SUPERVISOR_COMMS" in (PACKAGE / "_compat.py").read_text()
