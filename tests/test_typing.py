"""The package's typing rules that mypy cannot check itself (mypy runs in scripts/test)."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import airflow_provider_constantcontact

PACKAGE = Path(airflow_provider_constantcontact.__file__).parent
#: ``# type: ignore[code]  # why``: the error silenced, and the reason beside it.
EXPLAINED_IGNORE = re.compile(r"#\s*type:\s*ignore\[[\w\-, ]+\]\s+#\s*\S")


def type_ignores(path: Path) -> list[tuple[int, str]]:
    """(line, comment) of every comment in ``path`` holding ``type: ignore``."""
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    return [
        (token.start[0], token.string)
        for token in tokens
        if token.type == tokenize.COMMENT and re.search(r"type:\s*ignore", token.string)
    ]


def test_every_type_ignore_names_its_error_and_says_why() -> None:
    unexplained = [
        f"{path.relative_to(PACKAGE)}:{line}: {comment}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line, comment in type_ignores(path)
        if not EXPLAINED_IGNORE.search(comment)
    ]
    assert unexplained == []


def test_the_check_tells_an_explained_ignore_from_a_bare_one(tmp_path: Path) -> None:
    module = tmp_path / "module.py"
    module.write_text(
        "a = f()  # type: ignore[no-untyped-call]  # f is unannotated upstream\n"
        "b = f()  # type: ignore[no-untyped-call]\n"
        "c = f()  # type: ignore\n"
        "d = '# type: ignore in a string is no comment'\n"
    )
    found = type_ignores(module)
    assert [line for line, _ in found] == [1, 2, 3]
    assert [bool(EXPLAINED_IGNORE.search(comment)) for _, comment in found] == [True, False, False]
