"""Lists by name under every reading of Constant Contact's name comparison the sandbox models.

Constant Contact does not document how it compares list names (for its 409 and its ``name``
filter): exactly, without case, or normalised. Under each reading the export finds the list that
reads the same, creates no look-alike, and treats a 409 on create as "another run created it".
"""

from __future__ import annotations

import unicodedata

import pytest

from airflow_provider_constantcontact.exceptions import ConstantContactValidationError
from airflow_provider_constantcontact.operators.constantcontact import ConstantContactSegmentExportOperator
from airflow_provider_constantcontact.sandbox.account import LIST_NAME_READINGS
from tests.operators.conftest import imports_in_log, run, sandbox_hook, write_parquet

NFC, NFD = unicodedata.normalize("NFC", "Café club"), unicodedata.normalize("NFD", "Café club")


def export(sandbox, source, **kwargs) -> ConstantContactSegmentExportOperator:
    operator = ConstantContactSegmentExportOperator(
        task_id="export",
        source=str(source),
        field_mapping={"email": "Email"},
        wait_for_completion=False,
        deferrable=False,
        **kwargs,
    )
    operator.hook = sandbox_hook(sandbox)
    return operator


@pytest.fixture(params=LIST_NAME_READINGS)
def sandbox(request, constantcontact_sandbox_factory):
    return constantcontact_sandbox_factory(rate_limit=0, token_rate_limit=0, list_name_reading=request.param)


def test_names_find_what_reads_the_same_and_create_no_look_alike(sandbox, tmp_path) -> None:
    cafe, spaced = sandbox.create_list(NFC), sandbox.create_list("Spaced ")
    source = write_parquet(tmp_path / "s.parquet", {"Email": ["a@example.com"]})

    summary, _ = run(
        export(
            sandbox,
            source,
            list_names=[NFD, "Spaced ", "Spaced", "Brand\u200b new ", "Brand new"],
            create_missing_lists=True,
        )
    )

    created = sandbox.list_ids["Brand\u200b new "]
    assert sorted(sandbox.list_ids) == sorted([NFC, "Spaced ", "Brand\u200b new "])
    assert summary["list_ids"] == [cafe, spaced, created]
    assert summary["lists_created"] == ["Brand\u200b new "]


def test_a_name_differing_only_in_case_is_refused_not_created(sandbox, tmp_path) -> None:
    vip = sandbox.create_list("VIP")
    source = write_parquet(tmp_path / "s.parquet", {"Email": ["a@example.com"]})
    with pytest.raises(Exception, match=f"'VIP' \\({vip}\\) differs only in case"):
        run(export(sandbox, source, list_names=["vip"], create_missing_lists=True))
    assert list(sandbox.list_ids) == ["VIP"]
    assert imports_in_log(sandbox) == []


def test_two_lists_that_read_the_same_are_refused_naming_both(sandbox, tmp_path) -> None:
    if sandbox.state.list_name_reading == "normalized":
        pytest.skip("under this reading the account cannot hold two lists that read the same")
    first, second = sandbox.create_list("Spaced"), sandbox.create_list("Spaced  ")
    source = write_parquet(tmp_path / "s.parquet", {"Email": ["a@example.com"]})
    with pytest.raises(ConstantContactValidationError, match="2 contact lists read as 'Spaced'") as err:
        run(export(sandbox, source, list_names=["Spaced"]))
    assert first in str(err.value)
    assert second in str(err.value)
    assert imports_in_log(sandbox) == []


@pytest.mark.parametrize("theirs", ["Race list", NFC])
def test_a_409_on_create_finds_the_list_another_run_created(sandbox, tmp_path, theirs) -> None:
    source = write_parquet(tmp_path / "s.parquet", {"Email": ["a@example.com"]})
    ours = NFD if theirs == NFC else theirs
    sandbox.before_next(lambda: sandbox.create_list(theirs), "/v3/contact_lists", method="POST")

    summary, _ = run(export(sandbox, source, list_names=[ours], create_missing_lists=True))

    assert list(sandbox.list_ids) == [theirs]
    assert summary["list_ids"] == [sandbox.list_ids[theirs]]
    creates = [e.status for e in sandbox.request_log if e.method == "POST" and e.path == "/v3/contact_lists"]
    assert creates == [409]
