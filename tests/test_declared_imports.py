"""Every third-party module the package imports is a declared requirement of the distribution.

An import of a library that only happens to be installed (because Airflow or a test tool pulls it
in) breaks on the day that library drops it. The package's imports are read from its source
(AST), mapped to distributions with ``importlib.metadata.packages_distributions()``, and checked
against the requirements the installed distribution declares (``pyproject.toml`` as installed):
a module imported when the package is imported needs a runtime dependency; a module imported
only inside a function may come from an optional extra (the ``openlineage`` one); the test tools
(``dev``) never count.
"""

from __future__ import annotations

import ast
import importlib.metadata
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import airflow_provider_constantcontact

PACKAGE = Path(airflow_provider_constantcontact.__file__).parent
DISTRIBUTION = "airflow-provider-constantcontact"
#: Imports only pytest itself makes: the sandbox's pytest plugin, loaded by pytest alone.
PYTEST_ONLY = {Path("sandbox/pytest_plugin.py"): {"pytest"}}
#: Extras that are test tooling, not features: they never declare a runtime import.
TOOLING_EXTRAS = {"dev"}


def imports(path: Path) -> Iterator[tuple[str, bool]]:
    """(absolute module name, imported at module level) for every import in ``path``.

    Imports under ``if TYPE_CHECKING:`` are only read by type checkers and count as lazy.
    """

    def walk(node: ast.AST, top_level: bool) -> Iterator[tuple[str, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                yield from ((alias.name, top_level) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                yield child.module, top_level
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) or (
                isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test)
            ):
                yield from walk(child, False)
            else:
                yield from walk(child, top_level)

    yield from walk(ast.parse(path.read_text()), True)


def distribution_of(module: str) -> set[str]:
    """The installed distributions that may provide ``module`` (canonical names).

    ``airflow`` is a namespace shared by Airflow and its providers: ``airflow.providers.<x>`` is
    the provider's own distribution, the rest Airflow's.
    """
    parts = module.split(".")
    if parts[0] == "airflow" and len(parts) > 2 and parts[1] == "providers":
        provider = "-".join(parts[2:4]) if parts[2] == "common" else parts[2]
        return {canonicalize_name(f"apache-airflow-providers-{provider}")}
    if parts[0] == "airflow":
        return {"apache-airflow"}
    return {canonicalize_name(d) for d in _packages_distributions().get(parts[0], [])}


@cache
def _packages_distributions() -> dict[str, list[str]]:
    return dict(importlib.metadata.packages_distributions())


def declared() -> tuple[set[str], set[str]]:
    """Runtime dependencies, and what the feature extras add (canonical names)."""
    metadata = importlib.metadata.metadata(DISTRIBUTION)
    feature_extras = set(metadata.get_all("Provides-Extra") or []) - TOOLING_EXTRAS
    runtime: set[str] = set()
    extras: set[str] = set()
    for requirement in map(Requirement, importlib.metadata.requires(DISTRIBUTION) or []):
        name = canonicalize_name(requirement.name)
        if requirement.marker is None:
            runtime.add(name)
        elif any(_needs_extra(requirement.marker, extra) for extra in feature_extras):
            extras.add(name)
    return runtime, extras


def _needs_extra(marker: Marker, extra: str) -> bool:
    return marker.evaluate({"extra": extra}) and not marker.evaluate({"extra": ""})


def third_party_imports() -> Iterator[tuple[str, str, bool]]:
    """(file, module, at module level) for every import outside the standard library and the package."""
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        for module, top_level in imports(path):
            root = module.split(".")[0]
            if root in sys.stdlib_module_names or root == PACKAGE.name:
                continue
            if root in PYTEST_ONLY.get(relative, set()):
                continue
            yield str(relative), module, top_level


def test_every_third_party_import_is_declared() -> None:
    runtime, extras = declared()
    undeclared = []
    for file, module, top_level in third_party_imports():
        candidates = distribution_of(module)
        allowed = runtime if top_level else runtime | extras
        if not candidates & allowed:
            where = "dependencies" if top_level else "dependencies or an extra"
            undeclared.append(f"{file}: {module} (from {sorted(candidates) or 'nothing installed'}; {where})")
    assert undeclared == [], (
        "Imported but not declared in pyproject.toml (then re-run scripts/setup):\n" + "\n".join(undeclared)
    )


def test_the_walk_sees_the_imports_it_must_judge() -> None:
    found = {(file, module.split(".")[0], top_level) for file, module, top_level in third_party_imports()}
    # Module level: needs a runtime dependency.
    assert ("export/source.py", "fsspec", True) in found
    assert ("hooks/_http.py", "tenacity", True) in found
    # Inside functions only: an extra may provide it.
    assert ("_compat.py", "sqlalchemy", False) in found
    assert ("lineage.py", "openlineage", False) in found
    assert not any(module == "pytest" for _, module, _ in found)


def test_a_new_undeclared_import_fails(tmp_path: Path, monkeypatch) -> None:
    """The check itself: an import of an installed but undeclared library is reported."""
    fake_package = tmp_path / PACKAGE.name
    fake_package.mkdir()
    (fake_package / "module.py").write_text("import responses\n\ndef later():\n    import pytest\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake_package)
    runtime, extras = declared()
    found = list(third_party_imports())
    assert found == [("module.py", "responses", True), ("module.py", "pytest", False)]
    assert not any(distribution_of(module) & (runtime | extras) for _, module, _ in found)
