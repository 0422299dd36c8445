"""The wait's cross-check of Constant Contact's counters against the contacts sent (issue 18 §1)."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from airflow_provider_constantcontact.exceptions import ConstantContactImportError
from airflow_provider_constantcontact.export import passes
from airflow_provider_constantcontact.export.service_counts import check_contacts_taken
from airflow_provider_constantcontact.hooks import constantcontact as hook_module
from airflow_provider_constantcontact.sandbox.__main__ import build_parser
from tests.operators.conftest import run, sandbox_hook, write_parquet


def _status(items: int, persons: int, errors: int = 0, correctable: int = 0, cannot_add: int = 0) -> dict:
    return {
        "state": "completed",
        "status": {
            "items_total_count": items,
            "person_count": persons,
            "error_count": errors,
            "correctable_count": correctable,
            "cannot_add_to_list_count": cannot_add,
        },
    }


@pytest.mark.parametrize(
    "activity",
    [
        _status(10, 10),  # every counter in contacts
        _status(11, 10),  # a headings row counted as an item
        _status(10, 7, errors=3, correctable=3),  # person_count without flagged contacts
        _status(10, 10, errors=3, correctable=3),  # person_count with them
        _status(11, 8, errors=2, correctable=1),  # errors besides correctable ones, plus headings
        _status(10, 6, errors=2, cannot_add=2),  # person_count without unsubscribed contacts
    ],
)
def test_every_reading_of_a_complete_import_passes(activity: dict) -> None:
    check_contacts_taken({"a": 10}, 10, {"a": activity}, set())


@pytest.mark.parametrize(
    ("activity", "dropped"),
    [
        (_status(9, 9), 1),  # fewer items: a contact lost, whatever the unit
        (_status(11, 8), 2),  # a headings row, but only 8 contacts accounted for
        (_status(6, 3, errors=3, correctable=3), 4),
    ],
)
def test_fewer_contacts_than_sent_is_a_drop(activity: dict, dropped: int) -> None:
    with pytest.raises(ConstantContactImportError, match=rf"at least {dropped} contacts were dropped") as err:
        check_contacts_taken({"a": 10}, 10, {"a": activity}, set())
    assert "activity a: 10 contacts sent" in str(err.value)


def test_an_activity_short_of_contacts_is_not_hidden_by_another_ones_headings_row() -> None:
    activities = {"a": _status(11, 10), "b": _status(10, 9), "r": _status(5, 0)}
    with pytest.raises(ConstantContactImportError, match="activity b: 10 contacts sent"):
        check_contacts_taken({"a": 10, "b": 10}, 20, activities, {"r"})


def test_without_per_activity_counts_the_imports_are_checked_together() -> None:
    """A summary resumed from an older trigger has no contacts_by_activity; removals are left out."""
    activities = {"a": _status(11, 10), "b": _status(11, 10), "r": _status(500, 0)}
    check_contacts_taken(None, 20, activities, {"r"})
    with pytest.raises(ConstantContactImportError, match="the import activities together: 23 contacts"):
        check_contacts_taken(None, 23, activities, {"r"})


def test_a_body_the_service_cuts_short_still_fails_the_waited_export(
    make_export: Any, constantcontact_sandbox: Any, newsletter: str, tmp_path: Any, monkeypatch: Any
) -> None:
    """Bodies over the service's 4 MiB (allowed here on purpose) lose their tail: the wait says so."""
    monkeypatch.setattr(passes, "MAX_IMPORT_BODY_BYTES", 5_000_000)
    monkeypatch.setattr(hook_module, "MAX_IMPORT_BODY_BYTES", 5_000_000)
    constantcontact_sandbox.state.import_items_include_headings_row = True
    count = 30_000
    source = write_parquet(
        tmp_path / "wide.parquet",
        {
            "Email": [f"n{i}@example.com" for i in range(count)],
            "City": ["x" * 45] * count,
            "Street": ["y" * 80] * count,
        },
    )
    operator = make_export(
        source=str(source),
        field_mapping={"email": "Email", "city": "City", "street": "Street"},
        wait_for_completion=True,
    )
    with pytest.raises(
        ConstantContactImportError, match=r"activity [-0-9a-f]+: [0-9,]+ contacts sent, [0-9,]+ items"
    ) as err:
        run(operator)
    kept = len(constantcontact_sandbox.list_member_emails(newsletter))
    assert 0 < kept < count
    assert f"at least {count - kept:,} contacts were dropped" in str(err.value)


def test_the_sandbox_counts_a_headings_row_only_when_asked(constantcontact_sandbox_factory: Any) -> None:
    assert build_parser().parse_args([]).import_items_include_headings_row is False
    assert (
        build_parser().parse_args(["--import-items-include-headings-row"]).import_items_include_headings_row
    )
    sandbox = constantcontact_sandbox_factory(
        rate_limit=0, token_rate_limit=0, import_items_include_headings_row=True, lists=["L"]
    )
    hook = sandbox_hook(sandbox)
    contacts = [{"email": "a@example.com"}, {"email": "not-an-email"}]
    counted = hook.import_contacts(contacts, [sandbox.list_ids["L"]])["activity_id"]
    sandbox.state.import_items_include_headings_row = False
    plain = hook.import_contacts(contacts, [sandbox.list_ids["L"]])["activity_id"]
    token = requests.post(
        sandbox.token_url,
        data={"grant_type": "refresh_token", "refresh_token": sandbox.refresh_token},
        auth=(sandbox.client_id, sandbox.client_secret),
        timeout=10,
    ).json()["access_token"]
    statuses = [
        requests.get(
            f"{sandbox.api_base_url}/activities/{activity_id}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        ).json()["status"]
        for activity_id in (counted, plain)
    ]
    assert [(s["items_total_count"], s["items_completed_count"]) for s in statuses] == [(3, 3), (2, 2)]
    assert [(s["person_count"], s["error_count"]) for s in statuses] == [(1, 1), (1, 1)]
