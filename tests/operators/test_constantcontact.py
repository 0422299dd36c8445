"""The segment export operator against the sandbox, over real HTTP."""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_constantcontact.exceptions import (
    ConstantContactImportError,
    ConstantContactNotFoundError,
    ConstantContactServerError,
    ConstantContactValidationError,
    SegmentSourceError,
)
from airflow_provider_constantcontact.export import engine, passes
from airflow_provider_constantcontact.export.batches import envelope
from airflow_provider_constantcontact.export.summary import ExportSummary
from airflow_provider_constantcontact.operators.constantcontact import (
    ConstantContactSegmentExportOperator,
    normalize_list_ids,
)
from airflow_provider_constantcontact.utils.templated import parse_list
from tests.airflow_compat import TaskDeferred, object_storage_registry
from tests.export.test_source import write_corrupt_data_page
from tests.operators.conftest import IMPORT_PATH, FakeTI, imports_in_log, run, write_parquet

BODY_LIMIT = 4_000_000

NASTY_NAMES = [
    'O"Brien',
    "back\\slash",
    "new\nline",
    "tab\there",
    "emoji 😀",
    "Zoë ünïcödé",
    "\x00nul",
    "  pad  ",
]


def _segment_rows() -> dict[str, list[Any]]:
    """Valid, duplicate, invalid, missing, over-length and messy rows; known outcome per row."""
    emails, first, last, tier = [], [], [], []
    for i in range(60):
        emails.append(f"  User{i}@Example.COM " if i % 3 else f"user{i}@example.com")
        first.append(NASTY_NAMES[i % len(NASTY_NAMES)] if i % 5 else None)
        last.append(("L" * 70) if i == 7 else f"Last{i}")
        tier.append(["gold", "", None, "silver  "][i % 4])
    extra = [
        ("USER3@example.com", "Dup", "Dup", "gold"),  # duplicate of row 3
        ("user10@EXAMPLE.com", "Dup", "Dup", "gold"),  # duplicate of row 10
        (None, "NoEmail", "x", "gold"),
        ("   ", "Blank", "x", "gold"),
        ("not-an-email", "Bad", "x", "gold"),
        ("a@b", "Bad", "x", "gold"),
        ("x" * 45 + "@example.com", "Long", "x", "gold"),
    ]
    for row in extra:
        for column, value in zip((emails, first, last, tier), row, strict=True):
            column.append(value)
    return {"Email": emails, "First": first, "Last": last, "Tier": tier}


def _expected_members(rows: dict[str, list[Any]]) -> dict[str, dict[str, str]]:
    """What the list must hold: first occurrence per email, trimmed, truncated, blanks omitted."""
    expected: dict[str, dict[str, str]] = {}
    for email, first, last, tier in zip(
        rows["Email"], rows["First"], rows["Last"], rows["Tier"], strict=True
    ):
        email = (email or "").strip().lower()
        if not email.startswith("user") or email in expected:
            continue
        props = {}
        for key, value, limit in (
            ("first_name", first, 50),
            ("last_name", last, 50),
            ("cf:loyalty_tier", tier, 255),
        ):
            value = (value or "").strip()[:limit]
            if value:
                props[key] = value
        expected[email] = props
    return expected


def test_export_maps_cleans_dedups_and_accounts_for_every_row(
    make_export, constantcontact_sandbox, newsletter, tmp_path: Path
) -> None:
    rows = _segment_rows()
    source = write_parquet(tmp_path / "segment.parquet", rows)
    rejects = tmp_path / "out" / "rejects.parquet"
    summary, ti = run(make_export(source=str(source), rejects_path=str(rejects)))

    expected = _expected_members(rows)
    assert constantcontact_sandbox.list_members(newsletter) == expected
    assert summary["rows_read"] == 67
    assert summary["contacts_submitted"] == len(expected) == 60
    assert summary["duplicates"] == 2
    assert summary["rejected"] == {"email_too_long": 1, "invalid_email": 2, "missing_email": 2}
    assert summary["truncated"] == {"last_name": 1}
    assert summary["rows_read"] == (
        summary["contacts_submitted"] + summary["duplicates"] + sum(summary["rejected"].values())
    )
    assert summary["batches"] == 1
    assert summary["plan_only"] is False
    assert summary["dry_run"] is False  # the old key, kept until 0.2.0
    assert summary["list_ids"] == [newsletter]
    assert len(summary["activity_ids"]) == 1
    assert ti.xcom == {"activity_ids": summary["activity_ids"]}

    # Every input row is accounted for: sent, or in the rejects file with its reason.
    table = pq.read_table(rejects)
    assert table.column_names == ["Email", "First", "Last", "Tier", "reason"]
    assert summary["rows_read"] == summary["contacts_submitted"] + table.num_rows
    assert summary["rejects_written"] == table.num_rows == 7
    assert sorted(
        zip(
            table.column("Email").to_pylist(),
            table.column("First").to_pylist(),
            table.column("reason").to_pylist(),
            strict=True,
        ),
        key=lambda row: (row[2], row[1]),
    ) == [
        ("USER3@example.com", "Dup", "duplicate"),  # original values, as read
        ("user10@EXAMPLE.com", "Dup", "duplicate"),
        ("x" * 45 + "@example.com", "Long", "email_too_long"),
        ("not-an-email", "Bad", "invalid_email"),
        ("a@b", "Bad", "invalid_email"),
        ("   ", "Blank", "missing_email"),
        (None, "NoEmail", "missing_email"),
    ]


def test_logs_hold_counts_and_masked_samples_but_no_personal_data(
    make_export, tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture
) -> None:
    rows = _segment_rows()
    source = write_parquet(tmp_path / "segment.parquet", rows)
    with caplog.at_level("INFO"):
        run(make_export(source=str(source)))
    captured = capsys.readouterr()
    text = caplog.text + captured.out + captured.err  # task logs go through structlog to stdout
    assert "Batch 1 of ~1 sent" in text
    assert "n***" in text  # masked sample of "not-an-email"
    for email in rows["Email"]:
        if email and email.strip():
            assert email.strip().lower() not in text.lower()
    assert "Last59" not in text
    assert 'O"Brien' not in text


def test_segments_filter_selects_the_rows(
    make_export, constantcontact_sandbox, newsletter, tmp_path: Path
) -> None:
    emails = [f"s{i}@example.com" for i in range(30)]
    segment = ["VIP", "Churned", "New"] * 10
    source = write_parquet(tmp_path / "s.parquet", {"Email": emails, "Seg": segment})
    summary, _ = run(
        make_export(
            source=str(source),
            field_mapping={"email": "Email"},
            segment_column="Seg",
            segments=["VIP", "New"],
        )
    )
    members = constantcontact_sandbox.list_members(newsletter)
    assert set(members) == {email for email, seg in zip(emails, segment, strict=True) if seg != "Churned"}
    assert summary["rows_read"] == 20
    assert summary["rows_filtered_out"] == 10
    assert summary["contacts_submitted"] == 20


@pytest.mark.parametrize("form", ["folder", "glob", "file_uri", "list"])
def test_multiple_files_are_read_together_first_occurrence_wins(
    form: str, make_export, constantcontact_sandbox, newsletter, tmp_path: Path
) -> None:
    root = tmp_path / "seg"
    write_parquet(root / "a.parquet", {"Email": ["a@example.com", "b@example.com"], "First": ["A1", "B1"]})
    # Compatible but different schema: large_string email, an extra column.
    write_parquet(
        root / "b.parquet",
        {
            "Email": pa.array(["B@example.com", "c@example.com"], pa.large_string()),
            "First": ["B2", "C2"],
            "Extra": [1, 2],
        },
    )
    write_parquet(root / "sub" / "c.parquet", {"Email": ["d@example.com"], "First": ["D3"]})
    (root / "_SUCCESS").write_text("")
    source: Any = {
        "folder": str(root),
        "glob": str(root / "**" / "*.parquet"),
        "file_uri": f"file://{root}",
        "list": [str(root / "a.parquet"), str(root / "b.parquet"), str(root / "sub" / "c.parquet")],
    }[form]
    summary, _ = run(make_export(source=source, field_mapping={"email": "Email", "first_name": "First"}))
    members = constantcontact_sandbox.list_members(newsletter)
    assert members == {
        "a@example.com": {"first_name": "A1"},
        "b@example.com": {"first_name": "B1"},
        "c@example.com": {"first_name": "C2"},
        "d@example.com": {"first_name": "D3"},
    }
    assert summary["files"] == 3
    assert summary["duplicates"] == 1


def _list_requests(sandbox) -> list[str]:
    """Paths of the contact-list requests the sandbox received."""
    return [entry.path for entry in sandbox.request_log if entry.path.startswith("/v3/contact_lists")]


@pytest.mark.parametrize(
    ("unknown", "list_requests"),
    [
        # Up to two ids: one GET each.
        (["00000000-0000-4000-8000-00000000dead"], 2),
        # More: one pass over the account's lists (one page here).
        (["00000000-0000-4000-8000-00000000dead", "00000000-0000-4000-8000-00000000beef"], 1),
    ],
)
def test_unknown_list_ids_fail_before_sending(
    make_export, constantcontact_sandbox, newsletter, tmp_path, unknown, list_requests
) -> None:
    source = write_parquet(tmp_path / "s.parquet", {"Email": ["a@example.com"]})
    operator = make_export(
        source=str(source), list_ids=[newsletter, *unknown], field_mapping={"email": "Email"}
    )
    with pytest.raises(ConstantContactNotFoundError, match=f"list id\\(s\\): {', '.join(unknown)}; nothing"):
        run(operator)
    assert imports_in_log(constantcontact_sandbox) == []
    assert len(_list_requests(constantcontact_sandbox)) == list_requests


def test_many_list_ids_are_checked_in_one_pass_over_the_lists(
    make_export, constantcontact_sandbox, tmp_path
) -> None:
    # 520 lists: the hook reads them 500 a page, so the pass needs two pages for the last ones.
    created = [constantcontact_sandbox.create_list(f"List {i:03d}") for i in range(520)]
    list_ids = created[::20][:25] + created[-25:]  # 50 ids, some on each page
    emails = ["m1@example.com", "m2@example.com"]
    source = write_parquet(tmp_path / "s.parquet", {"Email": emails})
    summary, _ = run(make_export(source=str(source), field_mapping={"email": "Email"}, list_ids=list_ids))

    assert _list_requests(constantcontact_sandbox) == ["/v3/contact_lists"] * 2  # not 50 GETs
    assert summary["list_ids"] == list_ids
    assert set(constantcontact_sandbox.list_members(list_ids[0])) == set(emails)
    assert set(constantcontact_sandbox.list_members(list_ids[-1])) == set(emails)

    constantcontact_sandbox.clear_request_log()
    run(make_export(source=str(source), field_mapping={"email": "Email"}, list_ids=created[:3]))
    assert _list_requests(constantcontact_sandbox) == ["/v3/contact_lists"]  # all found on page one


def test_missing_custom_field_fails_before_sending(make_export, constantcontact_sandbox, tmp_path) -> None:
    source = write_parquet(tmp_path / "s.parquet", {"Email": ["a@example.com"], "T": ["x"], "U": ["y"]})
    mapping = {"email": "Email", "cf:loyalty_tier": "T", "cf:shoe_size": "U", "cf:nope": "U"}
    with pytest.raises(ConstantContactValidationError, match="shoe_size, nope do not exist"):
        run(make_export(source=str(source), field_mapping=mapping))
    assert imports_in_log(constantcontact_sandbox) == []


def test_missing_columns_fail_listing_the_columns_that_exist(
    make_export, constantcontact_sandbox, tmp_path
) -> None:
    source = write_parquet(tmp_path / "s.parquet", {"Email": ["a@example.com"], "Given": ["A"]})
    with pytest.raises(
        SegmentSourceError, match=r"'First', 'Last', 'Tier' not found .* exist are: Email, Given"
    ):
        run(make_export(source=str(source)))
    assert constantcontact_sandbox.request_log == []  # not even a token request


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"first_name": "Email"}, "must map 'email'"),
        ({"email": "Email", "favourite_colour": "Email"}, "unknown Constant Contact fields"),
        ({"email": "Email", **{f"cf:f{i}": "Email" for i in range(26)}}, "26 custom fields"),
    ],
)
def test_bad_mappings_fail_before_any_request(
    make_export, constantcontact_sandbox, tmp_path, mapping, message
) -> None:
    source = write_parquet(tmp_path / "s.parquet", {"Email": ["a@example.com"]})
    with pytest.raises(ValueError, match=message):
        run(make_export(source=str(source), field_mapping=mapping))
    assert constantcontact_sandbox.request_log == []


def test_max_contacts_fails_before_sending_saying_how_many(
    make_export, constantcontact_sandbox, tmp_path
) -> None:
    emails = [f"m{i}@example.com" for i in range(12)] + ["m0@example.com", "bad"]
    source = write_parquet(tmp_path / "s.parquet", {"Email": emails})
    with pytest.raises(ValueError, match=r"12 valid, distinct contacts, more than max_contacts=10"):
        run(make_export(source=str(source), field_mapping={"email": "Email"}, max_contacts=10))
    assert imports_in_log(constantcontact_sandbox) == []
    summary, _ = run(make_export(source=str(source), field_mapping={"email": "Email"}, max_contacts=12))
    assert summary["contacts_submitted"] == 12


def test_plan_only_sends_nothing_and_reports(
    make_export, constantcontact_sandbox, newsletter, tmp_path
) -> None:
    rows = _segment_rows()
    source = write_parquet(tmp_path / "s.parquet", rows)
    rejects = tmp_path / "rejects.parquet"
    summary, ti = run(make_export(source=str(source), plan_only=True, rejects_path=str(rejects)))
    assert imports_in_log(constantcontact_sandbox) == []
    assert constantcontact_sandbox.list_members(newsletter) == {}
    assert summary["plan_only"] is True
    assert summary["dry_run"] is True  # the old key, kept until 0.2.0
    assert summary["activity_ids"] == []
    assert summary["batches"] == 1
    assert summary["contacts_submitted"] == 60
    assert summary["bytes_submitted"] > 60 * 20
    assert ti.xcom == {"activity_ids": []}
    assert pq.read_table(rejects).num_rows == summary["rejects_written"] == 7  # 5 rejected, 2 duplicates


def test_rejects_file_is_written_even_when_empty(make_export, tmp_path) -> None:
    source = write_parquet(tmp_path / "s.parquet", {"Email": ["ok@example.com"]})
    rejects = f"file://{tmp_path}/r/rejects.parquet"
    summary, _ = run(make_export(source=str(source), field_mapping={"email": "Email"}, rejects_path=rejects))
    table = pq.read_table(tmp_path / "r" / "rejects.parquet")
    assert table.num_rows == 0
    assert table.column_names == ["Email", "reason"]
    assert summary["rejects_path"] == rejects
    assert summary["rejects_written"] == 0


def _import_sizes(sandbox) -> list[int]:
    return [entry.body_bytes for entry in imports_in_log(sandbox) if entry.status == 201]


def test_40000_contact_split(make_export, constantcontact_sandbox, newsletter, tmp_path) -> None:
    emails = [f"n{i}@e.io" for i in range(90_001)]
    source = write_parquet(tmp_path / "s.parquet", {"Email": emails})
    summary, _ = run(make_export(source=str(source), field_mapping={"email": "Email"}))
    counts = [
        constantcontact_sandbox.get_activity(aid)["status"]["items_total_count"]
        for aid in summary["activity_ids"]
    ]
    assert counts == [40_000, 40_000, 10_001]
    assert summary["batches"] == 3
    assert len(constantcontact_sandbox.list_members(newsletter)) == 90_001


def test_4mb_split_with_rows_too_wide_for_40000(
    make_export, constantcontact_sandbox, newsletter, tmp_path
) -> None:
    count = 45_000
    emails = [f"w{i:06d}@example.com" for i in range(count)]
    tiers = [f"{i:06d}" + "t" * 194 for i in range(count)]  # 200 characters, within the 255 limit
    source = write_parquet(tmp_path / "s.parquet", {"Email": emails, "Tier": tiers})
    mapping = {"email": "Email", "cf:loyalty_tier": "Tier"}
    summary, _ = run(make_export(source=str(source), field_mapping=mapping))

    contact_bytes = len(json.dumps({"email": emails[0], "cf:loyalty_tier": tiers[0]}, separators=(",", ":")))
    prefix, suffix = envelope([newsletter])
    per_body = (BODY_LIMIT - len(prefix) - len(suffix) + 1) // (contact_bytes + 1)
    assert per_body < 40_000  # 40,000 of these rows would exceed the byte limit
    sizes = _import_sizes(constantcontact_sandbox)
    assert summary["batches"] == len(sizes) == math.ceil(count / per_body)
    assert all(size <= BODY_LIMIT for size in sizes)
    assert sizes[0] > BODY_LIMIT - contact_bytes - 1  # full: not one more contact fits
    members = constantcontact_sandbox.list_members(newsletter)
    assert len(members) == count
    assert members[emails[-1]] == {"cf:loyalty_tier": tiers[-1]}


def test_throttling_and_server_errors_mid_export_are_retried(
    make_export, constantcontact_sandbox, newsletter, tmp_path
) -> None:
    emails = [f"t{i}@e.io" for i in range(85_000)]
    source = write_parquet(tmp_path / "s.parquet", {"Email": emails})
    operator = make_export(source=str(source), field_mapping={"email": "Email"})
    post = operator.hook.import_contacts_body
    calls = []

    def faulty_post(body: bytes) -> dict:
        calls.append(len(body))
        if len(calls) == 2:  # mid-export: throttle twice, then a 500 and a 503
            constantcontact_sandbox.fail_next(2, status=429, path_prefix=IMPORT_PATH)
        if len(calls) == 3:
            constantcontact_sandbox.fail_next(1, status=500, path_prefix=IMPORT_PATH)
            constantcontact_sandbox.fail_next(1, status=503, path_prefix=IMPORT_PATH)
        return post(body)

    operator.hook.import_contacts_body = faulty_post
    summary, _ = run(operator)
    statuses = [entry.status for entry in imports_in_log(constantcontact_sandbox)]
    assert statuses.count(429) == 2
    assert 500 in statuses
    assert 503 in statuses
    assert statuses.count(201) == 3
    assert summary["contacts_submitted"] == 85_000
    assert len(constantcontact_sandbox.list_members(newsletter)) == 85_000


def test_access_token_expiring_mid_export_is_refreshed(
    make_export, constantcontact_sandbox, newsletter, tmp_path
) -> None:
    emails = [f"x{i}@e.io" for i in range(85_000)]
    source = write_parquet(tmp_path / "s.parquet", {"Email": emails})
    operator = make_export(source=str(source), field_mapping={"email": "Email"})
    post = operator.hook.import_contacts_body
    calls = []

    def expiring_post(body: bytes) -> dict:
        calls.append(1)
        if len(calls) == 2:
            constantcontact_sandbox.expire_access_tokens()
        return post(body)

    operator.hook.import_contacts_body = expiring_post
    summary, _ = run(operator)
    log = constantcontact_sandbox.request_log
    assert any(entry.status == 401 and entry.path == IMPORT_PATH for entry in log)
    assert sum(1 for entry in log if entry.path.endswith("/token")) == 2
    assert summary["batches"] == 3
    assert len(constantcontact_sandbox.list_members(newsletter)) == 85_000


def test_wait_adds_final_counters(make_export, constantcontact_sandbox, tmp_path) -> None:
    emails = [f"c{i}@example.com" for i in range(50)]
    constantcontact_sandbox.mark_unsubscribed(["c7@example.com"])
    constantcontact_sandbox.processing_rate = 500  # contacts a second: the activity takes a moment
    source = write_parquet(tmp_path / "s.parquet", {"Email": emails})
    summary, _ = run(
        make_export(source=str(source), field_mapping={"email": "Email"}, wait_for_completion=True)
    )
    assert summary["waited"] is True
    assert summary["items_total_count"] == 50
    assert summary["cannot_add_to_list_count"] == 1
    assert summary["error_count"] == 0
    assert set(summary["activity_states"].values()) == {"completed"}
    assert set(summary) <= ExportSummary.__required_keys__ | ExportSummary.__optional_keys__


def test_mismatch_between_sent_and_reported_fails_loudly(make_export, tmp_path, monkeypatch) -> None:
    # A body of 45,000 contacts: the service keeps 40,000 and drops the rest without an error.
    monkeypatch.setattr(passes, "MAX_IMPORT_CONTACTS", 45_000)
    source = write_parquet(tmp_path / "s.parquet", {"Email": [f"d{i}@e.io" for i in range(45_000)]})
    operator = make_export(source=str(source), field_mapping={"email": "Email"}, wait_for_completion=True)
    with pytest.raises(
        ConstantContactImportError,
        match=r"45,000 contacts sent, 40,000 items .* at least 5,000 contacts were dropped",
    ):
        run(operator)


def test_failed_activity_fails_the_task(make_export, constantcontact_sandbox, tmp_path) -> None:
    constantcontact_sandbox.fail_next_activity(errors=["Import file is corrupt"])
    source = write_parquet(tmp_path / "s.parquet", {"Email": ["a@example.com"]})
    operator = make_export(source=str(source), field_mapping={"email": "Email"}, wait_for_completion=True)
    with pytest.raises(ConstantContactImportError, match="Import file is corrupt"):
        run(operator)


def test_deferrable_defers_to_the_trigger_and_completes(
    make_export, constantcontact_sandbox, tmp_path, monkeypatch, airflow_db
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CONSTANTCONTACT_DEFAULT", constantcontact_sandbox.connection_json())
    source = write_parquet(tmp_path / "s.parquet", {"Email": ["a@example.com", "b@example.com"]})
    operator = make_export(
        source=str(source), field_mapping={"email": "Email"}, wait_for_completion=True, deferrable=True
    )
    ti_context = {"ti": FakeTI()}
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(ti_context)
    trigger = deferred.value.trigger
    classpath, kwargs = trigger.serialize()
    assert classpath.endswith("ConstantContactImportTrigger")
    assert kwargs["activity_ids"] == ti_context["ti"].xcom["activity_ids"]
    assert deferred.value.method_name == "execute_complete"

    async def first_event() -> dict:
        async for event in trigger.run():
            return event.payload
        raise AssertionError("no event")

    event = asyncio.run(first_event())
    # Resumed with the event only, as `airflow dags test` does: defer() kwargs are not relied on.
    assert not deferred.value.kwargs
    summary = operator.execute_complete(ti_context, event)
    assert summary["items_total_count"] == 2
    assert summary["contacts_submitted"] == 2

    with pytest.raises(ConstantContactImportError, match="Timed out"):
        operator.execute_complete(ti_context, {"status": "timeout", "message": "Timed out waiting"})


def test_template_fields() -> None:
    operator = ConstantContactSegmentExportOperator(
        task_id="t", source="s.parquet", list_ids="id", field_mapping={"email": "E"}
    )
    assert operator.deferrable is False  # [operators] default_deferrable is not set in the tests
    assert set(operator.template_fields) == {
        "source",
        "list_ids",
        "field_mapping",
        "segment_column",
        "segments",
        "rejects_path",
        "max_contacts",
        "max_error_ratio",
        "plan_only",
        "list_names",
        "create_missing_lists",
        "sync_mode",
        "max_removal_ratio",
        "removals_path",
        "state_path",
        "full_refresh",
    }


def test_empty_or_fully_filtered_segment_sends_nothing(
    make_export, constantcontact_sandbox, tmp_path
) -> None:
    empty = write_parquet(tmp_path / "e.parquet", {"Email": pa.array([], pa.string())})
    summary, ti = run(
        make_export(source=str(empty), field_mapping={"email": "Email"}, wait_for_completion=True)
    )
    assert (summary["rows_read"], summary["batches"], summary["activity_ids"]) == (0, 0, [])
    other = write_parquet(tmp_path / "o.parquet", {"Email": ["a@example.com"], "Seg": [3]})
    summary, _ = run(
        make_export(source=str(other), field_mapping={"email": "Email"}, segment_column="Seg", segments=["4"])
    )
    assert (summary["rows_read"], summary["rows_filtered_out"], summary["batches"]) == (0, 1, 0)
    assert imports_in_log(constantcontact_sandbox) == []


def test_permanent_failure_mid_export_stops_and_says_what_was_sent(
    make_export, constantcontact_sandbox, newsletter, tmp_path, capsys
) -> None:
    source = write_parquet(tmp_path / "s.parquet", {"Email": [f"p{i}@e.io" for i in range(85_000)]})
    operator = make_export(source=str(source), field_mapping={"email": "Email"})
    post = operator.hook.import_contacts_body
    calls = []

    def failing_post(body: bytes) -> dict:
        calls.append(1)
        if len(calls) == 2:
            constantcontact_sandbox.fail_next(50, status=500, path_prefix=IMPORT_PATH)
        return post(body)

    operator.hook.import_contacts_body = failing_post
    with pytest.raises(ConstantContactServerError):
        run(operator)
    assert len(calls) == 2  # nothing is sent after the failed body
    assert len(constantcontact_sandbox.list_members(newsletter)) == 40_000
    captured = capsys.readouterr()
    assert "Export stopped after 1 import request(s) with 40000 contacts" in captured.out + captured.err


def test_optional_fields_rendered_as_none_strings_mean_unset(make_export, tmp_path) -> None:
    source = write_parquet(tmp_path / "s.parquet", {"Email": ["a@example.com"]})
    operator = make_export(
        source=str(source),
        field_mapping={"email": "Email"},
        segment_column="None",
        segments="",
        rejects_path="None",
    )
    summary, _ = run(operator)
    assert summary["contacts_submitted"] == 1
    assert "rows_filtered_out" not in summary
    assert "rejects_path" not in summary


def test_list_ids_and_segments_accept_rendered_strings() -> None:
    # The text of a rendered list is made a list while rendering (tests/utils/test_templated.py).
    assert normalize_list_ids(["id-1", "id-2", "id-1"]) == ["id-1", "id-2"]
    assert normalize_list_ids(' id-1 , "id-2" ') == ["id-1", "id-2"]
    assert normalize_list_ids(["id-1"]) == ["id-1"]
    assert parse_list('["VIP", "New"]', "segments") == ["VIP", "New"]
    assert parse_list([1, 2], "segments") == [1, 2]
    with pytest.raises(ValueError, match="1 to 50"):
        normalize_list_ids("")
    with pytest.raises(ValueError, match="got 51"):
        normalize_list_ids([f"id-{i}" for i in range(51)])


def _capture_bodies(operator: ConstantContactSegmentExportOperator) -> list[dict[str, Any]]:
    """Record every import body the operator sends (parsed), then send it on unchanged."""
    post = operator.hook.import_contacts_body
    bodies: list[dict[str, Any]] = []

    def capturing_post(body: bytes) -> dict:
        bodies.append(json.loads(body))
        return post(body)

    operator.hook.import_contacts_body = capturing_post
    return bodies


def test_empty_values_never_overwrite_good_data(
    make_export, constantcontact_sandbox, newsletter, tmp_path
) -> None:
    mapping = {"email": "Email", "first_name": "First", "cf:loyalty_tier": "Tier"}
    emails = ["null@example.com", "blank@example.com", "changed@example.com"]
    first = write_parquet(
        tmp_path / "first.parquet", {"Email": emails, "First": ["Keep", "Keep", "Old"], "Tier": ["gold"] * 3}
    )
    run(make_export(source=str(first), field_mapping=mapping))
    # Null, empty and whitespace-only values; the third row shows the second import does update.
    second = write_parquet(
        tmp_path / "second.parquet",
        {"Email": emails, "First": [None, "  \t ", "New"], "Tier": ["", " ", "silver"]},
    )
    operator = make_export(source=str(second), field_mapping=mapping)
    bodies = _capture_bodies(operator)
    summary, _ = run(operator)

    assert summary["contacts_submitted"] == 3
    assert [body["import_data"] for body in bodies] == [
        [
            {"email": "null@example.com"},
            {"email": "blank@example.com"},
            {"email": "changed@example.com", "first_name": "New", "cf:loyalty_tier": "silver"},
        ]
    ]
    assert constantcontact_sandbox.list_members(newsletter) == {
        "null@example.com": {"first_name": "Keep", "cf:loyalty_tier": "gold"},
        "blank@example.com": {"first_name": "Keep", "cf:loyalty_tier": "gold"},
        "changed@example.com": {"first_name": "New", "cf:loyalty_tier": "silver"},
    }


def test_field_limits_reject_strict_fields_and_truncate_text_over_http(
    make_export, constantcontact_sandbox, newsletter, tmp_path
) -> None:
    mapping = {"email": "Email", "phone": "Phone", "birthday_month": "Month", "last_name": "Last"}
    rows = {
        "Email": ["ok@example.com", "phone@example.com", "month@example.com", "both@example.com"],
        "Phone": ["+1 555 0100", "1" * 51, "555", "2" * 51],
        "Month": [12, 5, 13, 13],
        "Last": ["L" * 70, "x", "y", "z"],
    }
    source = write_parquet(tmp_path / "s.parquet", rows)
    rejects = tmp_path / "rejects.parquet"
    summary, _ = run(make_export(source=str(source), field_mapping=mapping, rejects_path=str(rejects)))

    # A row gets the first reason in mapping order: "both" is rejected for its phone.
    assert summary["rejected"] == {"phone_too_long": 2, "birthday_month_invalid": 1}
    assert summary["truncated"] == {"last_name": 1}
    assert summary["contacts_submitted"] == 1
    table = pq.read_table(rejects)
    assert sorted(
        zip(table.column("Email").to_pylist(), table.column("reason").to_pylist(), strict=True)
    ) == [
        ("both@example.com", "phone_too_long"),
        ("month@example.com", "birthday_month_invalid"),
        ("phone@example.com", "phone_too_long"),
    ]
    members = constantcontact_sandbox.list_members(newsletter)
    assert members == {
        "ok@example.com": {"phone": "+1 555 0100", "birthday_month": 12, "last_name": "L" * 50}
    }
    assert len(members["ok@example.com"]["last_name"]) == 50


def test_export_to_two_lists(make_export, constantcontact_sandbox, newsletter, tmp_path) -> None:
    second = constantcontact_sandbox.create_list("VIP")
    emails = [f"two{i}@example.com" for i in range(5)]
    source = write_parquet(tmp_path / "s.parquet", {"Email": emails, "First": [f"F{i}" for i in range(5)]})
    mapping = {"email": "Email", "first_name": "First"}
    summary, _ = run(make_export(source=str(source), field_mapping=mapping, list_ids=[newsletter, second]))

    assert summary["list_ids"] == [newsletter, second]
    expected = {email: {"first_name": f"F{i}"} for i, email in enumerate(emails)}
    assert constantcontact_sandbox.list_members(newsletter) == expected
    assert constantcontact_sandbox.list_members(second) == expected


def test_corrupt_data_page_fails_naming_the_file(make_export, constantcontact_sandbox, tmp_path) -> None:
    write_parquet(tmp_path / "seg" / "a.parquet", {"email": ["a@example.com"]})
    bad = write_corrupt_data_page(tmp_path / "seg" / "b.parquet")  # footer intact: fails when scanned
    with pytest.raises(SegmentSourceError, match=rf"Cannot read {re.escape(str(bad))} as Parquet: Invalid"):
        run(make_export(source=str(tmp_path / "seg"), field_mapping={"email": "email"}))
    assert imports_in_log(constantcontact_sandbox) == []


@pytest.fixture
def memory_storage(monkeypatch) -> Iterator[list[str | None]]:
    """A ``memory://`` object store registered with Airflow the way providers register ``s3://``.

    Yields the connection ids Airflow asked the filesystem for; empties the store afterwards.
    """
    from fsspec.implementations.memory import MemoryFileSystem

    conn_ids: list[str | None] = []

    def get_fs(conn_id: str | None) -> MemoryFileSystem:
        conn_ids.append(conn_id)
        return MemoryFileSystem()

    monkeypatch.setitem(object_storage_registry(), "memory", get_fs)
    MemoryFileSystem.store.clear()
    yield conn_ids
    MemoryFileSystem.store.clear()


def test_object_storage_source_and_rejects_with_source_conn_id(
    make_export, constantcontact_sandbox, newsletter, memory_storage
) -> None:
    from airflow.sdk import ObjectStoragePath

    for name, emails in {
        "part-0": ["a@example.com", "bad-email"],
        "part-1": ["b@example.com", "A@example.com"],
    }.items():
        with ObjectStoragePath(f"memory://crm/segments/{name}.parquet").open("wb") as handle:
            pq.write_table(pa.table({"Email": emails, "First": ["F"] * len(emails)}), handle)

    memory_storage.clear()  # from here on, only the operator opens the store
    summary, _ = run(
        make_export(
            source="memory://crm/segments/",
            source_conn_id="crm_storage",
            field_mapping={"email": "Email", "first_name": "First"},
            rejects_path="memory://crm/rejects/2026-12-01.parquet",
        )
    )

    # The store was opened with the operator's connection only, for the source and the rejects.
    assert set(memory_storage) == {"crm_storage"}
    assert set(constantcontact_sandbox.list_members(newsletter)) == {"a@example.com", "b@example.com"}
    assert summary["files"] == 2
    assert (summary["rows_read"], summary["contacts_submitted"], summary["duplicates"]) == (4, 2, 1)
    with ObjectStoragePath("memory://crm/rejects/2026-12-01.parquet").open("rb") as handle:
        rejects = pq.read_table(handle).to_pydict()
    assert sorted(rejects["reason"]) == ["duplicate", "invalid_email"]


def test_a_file_rewritten_between_the_passes_fails_before_sending(
    make_export, constantcontact_sandbox, tmp_path, monkeypatch
) -> None:
    path = write_parquet(tmp_path / "s.parquet", {"Email": ["a@example.com", "b@example.com"]})
    scan = engine.SegmentExport.scan

    def scan_then_rewrite(self):
        found = scan(self)
        write_parquet(path, {"Email": ["c@example.com", "a@example.com", "b@example.com"]})
        return found

    monkeypatch.setattr(engine.SegmentExport, "scan", scan_then_rewrite)
    with pytest.raises(SegmentSourceError, match=r"changed while the export was reading them: .*s\.parquet"):
        run(make_export(source=str(path), field_mapping={"email": "Email"}))
    assert imports_in_log(constantcontact_sandbox) == []
