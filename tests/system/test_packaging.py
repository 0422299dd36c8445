"""What would be uploaded: ``scripts/package`` builds the sdist and the wheel and twine accepts them.

The wheel holds every module of the package (the sandbox included), ``py.typed`` and the
provider-info entry point, and nothing from ``tests/``; a fresh virtualenv that installs it has
Airflow list the provider. Slow (an isolated build, a fresh venv, an ``airflow`` process): a
``system`` test, like everything in ``tests/system/``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, airflow_env

PACKAGE = "airflow_provider_constantcontact"
DISTRIBUTION = "airflow-provider-constantcontact"
ENTRY_POINT = f"provider_info = {PACKAGE}.get_provider_info:get_provider_info"


def json_list_in(output: str) -> list[dict[str, str]]:
    """The JSON list in a command's output: Airflow 3.0 prints a log line before it on stdout."""
    decoder = json.JSONDecoder()
    for line_start in (
        i for i, char in enumerate(output) if char == "[" and (i == 0 or output[i - 1] == "\n")
    ):
        try:
            value, _ = decoder.raw_decode(output, line_start)
        except json.JSONDecodeError:
            continue
        if isinstance(value, list):
            return value
    raise AssertionError(f"no JSON list in the output: {output[:500]!r}")


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and wheel as scripts/package builds and checks them."""
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [str(REPO_ROOT / "scripts" / "package"), str(out)],
        env=airflow_env(PYTHON=sys.executable),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("PASSED") == 2, result.stdout  # twine check --strict, both files
    return out


def only(folder: Path, pattern: str) -> Path:
    (path,) = folder.glob(pattern)
    return path


def test_wheel_holds_the_package_typing_marker_and_entry_point_and_no_tests(dist: Path) -> None:
    with zipfile.ZipFile(only(dist, "*.whl")) as wheel:
        names = set(wheel.namelist())
        info = next(n for n in names if n.endswith(".dist-info/METADATA")).rsplit("/", 1)[0]
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
        metadata = Parser().parsestr(wheel.read(f"{info}/METADATA").decode())

    source = {
        str(p.relative_to(REPO_ROOT))
        for p in (REPO_ROOT / PACKAGE).rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert source <= names, sorted(source - names)
    assert f"{PACKAGE}/sandbox/emulator.py" in names
    assert f"{PACKAGE}/sandbox/pytest_plugin.py" in names
    assert f"{PACKAGE}/py.typed" in names
    assert {n.split("/")[0] for n in names} == {PACKAGE, info}
    assert "[apache_airflow_provider]" in entry_points
    assert ENTRY_POINT in entry_points

    urls = dict(url.split(", ", 1) for url in metadata.get_all("Project-URL"))
    assert set(urls) == {"Homepage", "Documentation", "Changelog", "Issues"}
    assert urls["Changelog"].endswith("/CHANGELOG.md")
    assert "Typing :: Typed" in metadata.get_all("Classifier")
    requirements = metadata.get_all("Requires-Dist")
    assert any(r.startswith("fsspec") for r in requirements)
    assert any(r.startswith("sqlalchemy") for r in requirements)


def test_sdist_holds_the_changelog_and_no_tests(dist: Path) -> None:
    with tarfile.open(only(dist, "*.tar.gz")) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"PKG-INFO", "pyproject.toml", "README.md", "CHANGELOG.md", f"{PACKAGE}/py.typed"} <= names
    assert not [name for name in names if name.startswith("tests")]


def test_a_fresh_virtualenv_installs_the_wheel_and_airflow_lists_the_provider(
    dist: Path, tmp_path: Path
) -> None:
    import uv

    uv_bin = uv.find_uv_bin()
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    # The libraries of this test run as constraints: the same resolution, from uv's cache.
    frozen = subprocess.run(
        [uv_bin, "pip", "freeze", "--python", sys.executable, "--exclude-editable"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    constraints = tmp_path / "constraints.txt"
    constraints.write_text(frozen)
    subprocess.run([uv_bin, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    subprocess.run(
        [uv_bin, "pip", "install", "--quiet", "--python", str(python), "-c", str(constraints)]
        + [str(only(dist, "*.whl"))],
        check=True,
        timeout=600,
    )

    home = tmp_path / "airflow-home"
    env = airflow_env(AIRFLOW_HOME=str(home), PATH=f"{venv / 'bin'}:/usr/bin:/bin")
    listed = subprocess.run(
        [str(venv / "bin" / "airflow"), "providers", "list", "--output", "json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    providers = {p["package_name"]: p for p in json_list_in(listed.stdout)}
    assert providers[DISTRIBUTION]["version"] == only(dist, "*.whl").name.split("-")[1]

    installed = subprocess.run(
        [str(python), "-c", f"import {PACKAGE}, pathlib; print(pathlib.Path({PACKAGE}.__file__).parent)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert (Path(installed) / "py.typed").is_file()
    assert str(venv) in installed  # the wheel's copy, not this checkout
    sandbox = subprocess.run(
        [str(venv / "bin" / "constantcontact-sandbox"), "--help"], capture_output=True, text=True, check=False
    )
    assert sandbox.returncode == 0, sandbox.stderr
