"""Messy inputs through the export operator over HTTP against the sandbox (issue 13).

Each test takes the path a user takes: a Parquet segment on disk, the operator's public
parameters, real requests to the sandbox. What was sent is read back from the request bodies
(captured on their way to the real HTTP call) and from the sandbox's stored contacts.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_constantcontact.exceptions import ConstantContactError
from airflow_provider_constantcontact.export import passes, reader
from tests.operators.conftest import imports_in_log, run, sandbox_hook, write_parquet

FAILING_IMPORT_STATUS = 500


def capture_bodies(operator: Any) -> list[bytes]:
    """Record every import body the operator sends; each still goes to the sandbox over HTTP."""
    bodies: list[bytes] = []
    real = operator.hook.import_contacts_body

    def spy(body: bytes) -> dict:
        bodies.append(bytes(body))
        return real(body)

    operator.hook.import_contacts_body = spy
    return bodies


def sent_contacts(bodies: list[bytes]) -> list[dict[str, Any]]:
    return [contact for body in bodies for contact in json.loads(body)["import_data"]]


def invalid_utf8(values: list[bytes | None]) -> pa.Array:
    """A ``string`` array holding bytes that are not valid UTF-8 (as a broken writer leaves them)."""
    return pa.array(values, pa.binary()).view(pa.string())


# --------------------------------------------------------------------- NaN and infinities (2)


def test_nan_and_infinities_are_omitted_and_never_overwrite_stored_values(
    make_export, constantcontact_sandbox, newsletter, tmp_path: Path
) -> None:
    sandbox = constantcontact_sandbox
    sandbox.create_custom_field("score")
    mapping = {"email": "Email", "cf:score": "Score", "birthday_month": "Month", "zip": "Zip"}
    first = write_parquet(
        tmp_path / "first" / "segment.parquet",
        {
            "Email": ["nan@example.com", "inf@example.com"],
            "Score": [7.5, 2.0],
            "Month": [3.0, 4.0],
            "Zip": [12345.0, 54321.0],
        },
    )
    run(make_export(source=str(first), field_mapping=mapping))
    assert sandbox.list_members(newsletter) == {
        "nan@example.com": {"cf:score": "7.5", "birthday_month": 3, "zip": "12345"},
        "inf@example.com": {"cf:score": "2", "birthday_month": 4, "zip": "54321"},
    }

    second = write_parquet(
        tmp_path / "second" / "segment.parquet",
        {
            "Email": ["nan@example.com", "inf@example.com", "new@example.com"],
            "Score": [float("nan"), float("inf"), float("-inf")],
            "Month": [float("nan"), float("nan"), 12.0],
            "Zip": [float("nan"), float("-inf"), float("nan")],
        },
    )
    operator = make_export(source=str(second), field_mapping=mapping)
    bodies = capture_bodies(operator)
    summary, _ = run(operator)

    assert summary["rejected"] == {}
    assert summary["contacts_submitted"] == 3
    assert sent_contacts(bodies) == [
        {"email": "nan@example.com"},
        {"email": "inf@example.com"},
        {"email": "new@example.com", "birthday_month": 12},
    ]
    raw = b"".join(bodies).lower()
    assert b"nan" not in raw.replace(b"nan@example.com", b"")
    assert b"inf" not in raw.replace(b"inf@example.com", b"")
    assert sandbox.list_members(newsletter) == {
        "nan@example.com": {"cf:score": "7.5", "birthday_month": 3, "zip": "12345"},
        "inf@example.com": {"cf:score": "2", "birthday_month": 4, "zip": "54321"},
        "new@example.com": {"birthday_month": 12},
    }


# ------------------------------------------------------------- what is sent for each type (2)

TYPED_FIELDS = {
    "cf:ts": "Ts",
    "cf:ts_frac": "TsFrac",
    "cf:ts_zoned": "TsZoned",
    "cf:day": "Day",
    "cf:amount": "Amount",
    "cf:flag": "Flag",
    "cf:count": "Count",
    "cf:tier": "Tier",
    "cf:raw": "Raw",
    "cf:big": "Big",
    "cf:view": "View",
    "cf:ratio": "Ratio",
    "phone": "Phone",
    "zip": "Zip",
    "birthday_month": "Month",
    "birthday_day": "DayOfMonth",
}


def typed_columns() -> dict[str, pa.Array]:
    new_york = ZoneInfo("America/New_York")
    return {
        "Email": pa.array(["typed@example.com", "nulls@example.com"]),
        "Ts": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5), None], pa.timestamp("us")),
        "TsFrac": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5, 250000), None], pa.timestamp("ms")),
        # 22:04:05 in New York on Jan 1st is 03:04:05 UTC on Jan 2nd.
        "TsZoned": pa.array(
            [dt.datetime(2024, 1, 1, 22, 4, 5, tzinfo=new_york), None], pa.timestamp("s", "America/New_York")
        ),
        "Day": pa.array([dt.date(2024, 1, 2), None], pa.date32()),
        "Amount": pa.array([Decimal("12.50"), None], pa.decimal128(10, 2)),
        "Flag": pa.array([True, None], pa.bool_()),
        "Count": pa.array([42, None], pa.int64()),
        "Tier": pa.array(["gold", None]).dictionary_encode(),
        "Raw": pa.array([b"raw \xc3\xa9", None], pa.binary()),
        "Big": pa.array(["big  ", "   "], pa.large_string()),
        "View": pa.array(["view", ""], pa.string_view()),
        "Ratio": pa.array([0.25, float("nan")], pa.float64()),
        "Phone": pa.array([5551234.0, None], pa.float64()),
        "Zip": pa.array([2134.0, float("inf")], pa.float32()),
        "Month": pa.array([7, None], pa.int16()),
        "DayOfMonth": pa.array(["09", None], pa.string()),
    }


def test_every_column_type_is_sent_as_documented(
    make_export, constantcontact_sandbox, newsletter, tmp_path: Path
) -> None:
    sandbox = constantcontact_sandbox
    for name in TYPED_FIELDS:
        if name.startswith("cf:"):
            sandbox.create_custom_field(name[3:])
    source = tmp_path / "typed.parquet"
    pq.write_table(pa.table(typed_columns()), source)
    operator = make_export(source=str(source), field_mapping={"email": "Email", **TYPED_FIELDS})
    bodies = capture_bodies(operator)

    summary, _ = run(operator)

    typed = {
        "cf:ts": "2024-01-02T03:04:05",
        "cf:ts_frac": "2024-01-02T03:04:05.250",
        "cf:ts_zoned": "2024-01-02T03:04:05Z",
        "cf:day": "2024-01-02",
        "cf:amount": "12.50",
        "cf:flag": "true",
        "cf:count": "42",
        "cf:tier": "gold",
        "cf:raw": "raw é",
        "cf:big": "big",
        "cf:view": "view",
        "cf:ratio": "0.25",
        "phone": "5551234",
        "zip": "2134",
        "birthday_month": 7,
        "birthday_day": 9,
    }
    assert summary["rejected"] == {}
    # Exactly this, in mapping order; every null, blank, NaN or infinite value is left out.
    assert sent_contacts(bodies) == [{"email": "typed@example.com", **typed}, {"email": "nulls@example.com"}]
    assert sandbox.list_members(newsletter) == {"typed@example.com": typed, "nulls@example.com": {}}


# ----------------------------------------------------------- rejects file and retries (3)


def _segment(folder: Path, name: str = "part-0.parquet") -> Path:
    return write_parquet(
        folder / name,
        {"Email": ["ok@example.com", "bad", "ok@example.com"], "First": ["A", "B", "C"]},
    )


@pytest.mark.parametrize("kind", ["folder", "glob", "deep glob", "file", "list"])
def test_rejects_inside_the_source_are_refused_before_sending(
    make_export, constantcontact_sandbox, tmp_path: Path, kind: str
) -> None:
    data = tmp_path / "segment"
    part = _segment(data)
    source: Any = {
        "folder": str(data),
        "glob": str(data / "*.parquet"),
        "deep glob": str(tmp_path / "**" / "*.parquet"),
        "file": str(part),
        "list": [str(tmp_path / "elsewhere.parquet"), str(data)],
    }[kind]
    if kind == "list":
        _segment(tmp_path, "elsewhere.parquet")
    rejects = str(part) if kind == "file" else str(data / "rejects.parquet")
    operator = make_export(source=source, field_mapping={"email": "Email", "first_name": "First"})
    operator.rejects_path = rejects

    with pytest.raises(ConstantContactError, match="lies inside the segment source") as caught:
        run(operator)

    assert "nothing was sent" in str(caught.value)
    assert imports_in_log(constantcontact_sandbox) == []
    assert sorted(p.name for p in data.iterdir()) == ["part-0.parquet"]


@pytest.mark.parametrize(
    ("pattern", "rejects"),
    [("seg-*.parquet", "rejects.parquet"), ("*.parquet", "rejects/rejects.parquet")],
)
def test_rejects_beside_a_glob_source_that_does_not_match_it_are_fine(
    make_export, constantcontact_sandbox, tmp_path: Path, pattern: str, rejects: str
) -> None:
    data = tmp_path / "segment"
    _segment(data, "seg-0.parquet")
    operator = make_export(
        source=str(data / pattern),  # "*" does not descend into folders
        field_mapping={"email": "Email", "first_name": "First"},
        rejects_path=str(data / rejects),
    )
    summary, _ = run(operator)
    assert summary["rejects_written"] == 2
    assert pq.read_table(data / rejects).column("reason").to_pylist() == ["invalid_email", "duplicate"]
    # A second run over the same glob reads the segment only, not the rejects.
    summary, _ = run(operator)
    assert summary["rows_read"] == 3


def test_rejects_path_ending_in_a_slash_names_a_folder(make_export, tmp_path: Path) -> None:
    source = _segment(tmp_path / "segment")
    out = tmp_path / "out"
    summary, _ = run(
        make_export(
            source=str(source),
            field_mapping={"email": "Email", "first_name": "First"},
            rejects_path=f"{out}/",
        )
    )
    assert summary["rejects_path"] == f"{out}/rejects.parquet"
    assert os.listdir(out) == ["rejects.parquet"]
    table = pq.read_table(out / "rejects.parquet")
    assert table.to_pydict() == {
        "Email": ["bad", "ok@example.com"],
        "First": ["B", "C"],
        "reason": ["invalid_email", "duplicate"],
    }


def _previous_rejects(make_export, sandbox, tmp_path: Path) -> tuple[Path, Path, bytes]:
    """A good run leaves a rejects file; return the next run's source, the file and its bytes."""
    out = tmp_path / "out"
    out.mkdir()
    first = _segment(tmp_path / "first")
    run(
        make_export(
            source=str(first),
            field_mapping={"email": "Email", "first_name": "First"},
            rejects_path=str(out / "rejects.parquet"),
        )
    )
    target = out / "rejects.parquet"
    sandbox.clear_request_log()
    # The next run's segment: 6 rows, rejects in every read batch (batches of 2 rows below).
    second = write_parquet(
        tmp_path / "second" / "segment.parquet",
        {
            "Email": ["x1@example.com", "bad1", "x2@example.com", "bad2", "x3@example.com", "bad3"],
            "First": ["1", "2", "3", "4", "5", "6"],
        },
    )
    return second, target, target.read_bytes()


def test_a_run_failing_on_server_errors_keeps_the_previous_rejects_file(
    make_export, constantcontact_sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    second, target, before = _previous_rejects(make_export, constantcontact_sandbox, tmp_path)
    monkeypatch.setattr(reader, "READ_BATCH_ROWS", 2)  # rejects are written before the failure
    constantcontact_sandbox.fail_next(
        50, FAILING_IMPORT_STATUS, path_prefix="/v3/activities/contacts_json_import"
    )
    operator = make_export(
        source=str(second), field_mapping={"email": "Email", "first_name": "First"}, rejects_path=str(target)
    )

    with pytest.raises(ConstantContactError):
        run(operator)

    assert len(imports_in_log(constantcontact_sandbox)) == 6  # the hook's whole retry budget
    assert target.read_bytes() == before
    assert pq.read_table(target).num_rows == 2
    assert os.listdir(target.parent) == ["rejects.parquet"]  # no partial file left behind


def test_a_run_failing_mid_encode_keeps_the_previous_rejects_file(
    make_export, constantcontact_sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    second, target, before = _previous_rejects(make_export, constantcontact_sandbox, tmp_path)
    monkeypatch.setattr(reader, "READ_BATCH_ROWS", 2)
    real_contact_json = passes.contact_json
    seen: dict[str, Any] = {"calls": 0}

    def failing_contact_json(*args: Any, **kwargs: Any) -> Any:
        seen["calls"] += 1
        if seen["calls"] == 3:  # two batches of rejects already written
            seen["files"] = sorted(os.listdir(target.parent))
            seen["partial"] = [
                (target.parent / name).stat().st_size for name in seen["files"] if name != "rejects.parquet"
            ]
            raise RuntimeError("disk full while encoding")
        return real_contact_json(*args, **kwargs)

    monkeypatch.setattr(passes, "contact_json", failing_contact_json)
    operator = make_export(
        source=str(second), field_mapping={"email": "Email", "first_name": "First"}, rejects_path=str(target)
    )

    with pytest.raises(RuntimeError, match="disk full"):
        run(operator)

    # While it was written, the new file was hidden: never visible as data (nor as the rejects).
    assert len(seen["files"]) == 2, seen
    assert [name for name in seen["files"] if name != "rejects.parquet"][0].startswith(".")
    assert target.read_bytes() == before
    assert os.listdir(target.parent) == ["rejects.parquet"]
    assert imports_in_log(constantcontact_sandbox) == []


# --------------------------------------------------------------------- invalid UTF-8 (4)


def test_invalid_utf8_rejects_only_its_row_before_anything_is_sent(
    make_export, constantcontact_sandbox, newsletter, tmp_path: Path
) -> None:
    source = tmp_path / "segment.parquet"
    pq.write_table(
        pa.table(
            {
                "Email": invalid_utf8(
                    [
                        b"a@example.com",
                        b"b@example.com",
                        b"c@example.com",
                        b"d\xff@example.com",
                        b"e@example.com",
                    ]
                ),
                "First": invalid_utf8([b"Ann", b"B\xe9a", b"Cy", b"Dee", b"Eve"]),
                "Tier": invalid_utf8([b"gold", b"silver", b"\xc3(", b"tin", b"lead"]),
                "Phone": invalid_utf8([b"1", b"2", b"3", b"4", b"\xff5"]),
            }
        ),
        source,
    )
    rejects = tmp_path / "rejects.parquet"
    operator = make_export(
        source=str(source),
        field_mapping={"email": "Email", "first_name": "First", "cf:loyalty_tier": "Tier", "phone": "Phone"},
        rejects_path=str(rejects),
    )
    bodies = capture_bodies(operator)

    summary, _ = run(operator)

    assert summary["rejected"] == {
        "cf:loyalty_tier_invalid_utf8": 1,
        "first_name_invalid_utf8": 1,
        "invalid_email": 1,
        "phone_invalid_utf8": 1,
    }
    assert summary["rows_read"] == 5
    assert summary["contacts_submitted"] == 1
    assert summary["rejects_written"] == 4
    assert len(bodies) == 1
    assert sent_contacts(bodies) == [
        {"email": "a@example.com", "first_name": "Ann", "cf:loyalty_tier": "gold", "phone": "1"}
    ]
    assert constantcontact_sandbox.list_members(newsletter) == {
        "a@example.com": {"first_name": "Ann", "cf:loyalty_tier": "gold", "phone": "1"}
    }
    table = pq.read_table(rejects)
    assert table.column("reason").to_pylist() == [
        "first_name_invalid_utf8",
        "cf:loyalty_tier_invalid_utf8",
        "invalid_email",
        "phone_invalid_utf8",
    ]
    assert table.column("Email").cast(pa.binary()).to_pylist()[2] == b"d\xff@example.com"  # as read


def test_a_bad_utf8_row_in_a_later_batch_is_found_before_the_first_request(
    make_export, constantcontact_sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader, "READ_BATCH_ROWS", 2)
    source = tmp_path / "segment.parquet"
    pq.write_table(
        pa.table(
            {
                "Email": pa.array([f"u{i}@example.com" for i in range(6)]),
                "First": invalid_utf8([b"a", b"b", b"c", b"d", b"e", b"\xfe"]),
            }
        ),
        source,
    )
    operator = make_export(source=str(source), field_mapping={"email": "Email", "first_name": "First"})
    operator.max_contacts = 4  # pass one must count the bad row out: 5 valid rows would fail here

    with pytest.raises(ValueError, match="5 valid, distinct contacts"):
        run(operator)

    assert imports_in_log(constantcontact_sandbox) == []


# ------------------------------------------------------------------- odd email columns


@pytest.mark.parametrize(
    ("column", "type_text"),
    [
        (pa.array([["a@example.com"], ["b@example.com"]], pa.list_(pa.string())), "list<"),
        (pa.array([{"address": "a@example.com"}, {"address": "b@example.com"}]), "struct<"),
    ],
)
def test_nested_email_column_fails_naming_column_type_and_file(
    make_export, constantcontact_sandbox, tmp_path: Path, column: pa.Array, type_text: str
) -> None:
    source = write_parquet(tmp_path / "segment.parquet", {"Mail": column})
    with pytest.raises(ConstantContactError) as caught:
        run(make_export(source=str(source), field_mapping={"email": "Mail"}))
    message = str(caught.value)
    assert "'Mail'" in message
    assert type_text in message
    assert str(source) in message
    assert imports_in_log(constantcontact_sandbox) == []


def test_string_view_and_binary_email_columns_work(
    make_export, constantcontact_sandbox, newsletter, tmp_path: Path
) -> None:
    view = write_parquet(
        tmp_path / "view" / "segment.parquet",
        {"Mail": pa.array([" View@Example.com ", "nope"], pa.string_view())},
    )
    summary, _ = run(make_export(source=str(view), field_mapping={"email": "Mail"}))
    assert summary["rejected"] == {"invalid_email": 1}
    binary = write_parquet(
        tmp_path / "binary" / "segment.parquet",
        {"Mail": pa.array([b"Bin@Example.com", b"bad\xff@example.com", None], pa.binary())},
    )
    summary, _ = run(make_export(source=str(binary), field_mapping={"email": "Mail"}))
    assert summary["rejected"] == {"invalid_email": 1, "missing_email": 1}
    assert summary["contacts_submitted"] == 1
    assert set(constantcontact_sandbox.list_members(newsletter)) == {"view@example.com", "bin@example.com"}


def test_kelvin_sign_is_not_folded_into_a_k(
    make_export, constantcontact_sandbox, newsletter, tmp_path
) -> None:
    source = write_parquet(
        tmp_path / "segment.parquet", {"Mail": ["\u212aate@example.com", "Kim@example.com"]}
    )
    operator = make_export(source=str(source), field_mapping={"email": "Mail"})
    bodies = capture_bodies(operator)
    summary, _ = run(operator)
    assert summary["rejected"] == {"invalid_email": 1}
    assert sent_contacts(bodies) == [{"email": "kim@example.com"}]
    assert set(constantcontact_sandbox.list_members(newsletter)) == {"kim@example.com"}


# ----------------------------------------------------------------------- wrong API URL


def test_api_base_url_without_v3_says_the_url_looks_wrong(
    make_export, constantcontact_sandbox, tmp_path: Path
) -> None:
    source = _segment(tmp_path)
    operator = make_export(source=str(source), field_mapping={"email": "Email"})
    hook = sandbox_hook(constantcontact_sandbox)
    assert hook.api_base_url.endswith("/v3")
    hook.api_base_url = hook.api_base_url[: -len("/v3")]
    operator.hook = hook

    with pytest.raises(ConstantContactError) as caught:
        run(operator)

    message = str(caught.value)
    assert "Unknown" not in message
    assert "api_base_url" in message
    assert "/v3" in message
    assert imports_in_log(constantcontact_sandbox) == []
    assert not any(
        entry.method == "POST" for entry in constantcontact_sandbox.request_log if "import" in entry.path
    )


# ------------------------------------------------------------------ layouts and filters


def test_dictionary_column_in_one_file_and_plain_strings_in_another(
    make_export, constantcontact_sandbox, newsletter, tmp_path: Path
) -> None:
    data = tmp_path / "segment"
    write_parquet(
        data / "a.parquet",
        {
            "Email": pa.array(["a@example.com"]).dictionary_encode(),
            "Seg": pa.array(["vip"]).dictionary_encode(),
        },
    )
    write_parquet(data / "b.parquet", {"Email": ["b@example.com", "c@example.com"], "Seg": ["vip", "other"]})
    summary, _ = run(
        make_export(
            source=str(data), field_mapping={"email": "Email"}, segment_column="Seg", segments=["vip"]
        )
    )
    assert summary["files"] == 2
    assert summary["rows_filtered_out"] == 1
    assert set(constantcontact_sandbox.list_members(newsletter)) == {"a@example.com", "b@example.com"}


def test_spark_hive_partitioned_folder_filters_on_the_partition_key(
    make_export, constantcontact_sandbox, newsletter, tmp_path: Path
) -> None:
    data = tmp_path / "segment"
    for segment, emails in {"vip": ["v1@example.com", "v2@example.com"], "other": ["o1@example.com"]}.items():
        folder = data / f"segment={segment}"
        name = "part-00000-3f1c.c000.snappy.parquet"
        write_parquet(folder / name, {"Email": emails, "First": [e[:2].upper() for e in emails]})
        (folder / f".{name}.crc").write_bytes(b"\x00crc not parquet")
    (data / "_SUCCESS").write_bytes(b"")
    (data / "._SUCCESS.crc").write_bytes(b"\x00crc")
    operator = make_export(
        source=str(data),
        field_mapping={"email": "Email", "first_name": "First", "cf:loyalty_tier": "segment"},
        segment_column="segment",
        segments=["vip"],
    )
    summary, _ = run(operator)
    assert summary["files"] == 2
    assert summary["rows_read"] == 2
    assert summary["rows_filtered_out"] == 1
    assert constantcontact_sandbox.list_members(newsletter) == {
        "v1@example.com": {"first_name": "V1", "cf:loyalty_tier": "vip"},
        "v2@example.com": {"first_name": "V2", "cf:loyalty_tier": "vip"},
    }


def test_segment_filter_matching_nothing_warns_with_the_values_and_counts(
    make_export,
    constantcontact_sandbox,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture,
) -> None:
    emails = [f"person{i}@example.com" for i in range(6)]
    source = write_parquet(
        tmp_path / "segment.parquet",
        {"Email": emails, "Seg": ["vip", "vip", "vip", "lapsed", "lapsed", "new"]},
    )
    with caplog.at_level("INFO"):
        summary, _ = run(
            make_export(
                source=str(source), field_mapping={"email": "Email"}, segment_column="Seg", segments=["VIP"]
            )
        )
    text = caplog.text + "".join(capsys.readouterr())  # task logs go through structlog to stdout
    assert summary["rows_read"] == 0
    assert summary["contacts_submitted"] == 0
    assert imports_in_log(constantcontact_sandbox) == []
    assert "No row of 'Seg' matches segments=['VIP']" in text
    assert "3 distinct values over 6 rows" in text
    assert "'v**': 3, 'l*****': 2, 'n**': 1" in text  # masked: first character and length
    assert "'VIP' would match 3 rows" in text
    assert "person" not in text  # no email, nor any part of one
    assert "example.com" not in text


def test_dedup_follows_path_order_whatever_the_order_of_the_sources(
    make_export, constantcontact_sandbox, newsletter, tmp_path: Path
) -> None:
    first = write_parquet(
        tmp_path / "a" / "part.parquet", {"Email": ["same@example.com"], "First": ["FromA"]}
    )
    second = write_parquet(
        tmp_path / "b" / "part.parquet",
        {"Email": ["SAME@example.com ", "b@example.com"], "First": ["FromB", "B"]},
    )
    rejects = tmp_path / "rejects.parquet"
    summary, _ = run(
        make_export(
            source=[str(second), str(first)],  # reversed: path order still puts a/ first
            field_mapping={"email": "Email", "first_name": "First"},
            rejects_path=str(rejects),
        )
    )
    assert summary["duplicates"] == 1
    assert constantcontact_sandbox.list_members(newsletter) == {
        "same@example.com": {"first_name": "FromA"},
        "b@example.com": {"first_name": "B"},
    }
    assert pq.read_table(rejects).to_pydict() == {
        "Email": ["SAME@example.com "],
        "First": ["FromB"],
        "reason": ["duplicate"],
    }


@pytest.mark.parametrize(
    "values",
    [
        ["first.person@example.com", "second.person@example.org"],
        ["jane.doe@gmail,com", "john.smith at example.org"],  # mistyped: no redaction knows them
        ["Jane", "Jonathan"],  # a first-name column chosen by mistake
    ],
)
def test_segment_values_in_the_warning_are_counts_and_masked_values_only(
    make_export, tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture, values
) -> None:
    # A segment column that holds personal data (a wrong column chosen): the warning shows none.
    emails = ["first.person@example.com", "second.person@example.org"]
    source = write_parquet(tmp_path / "segment.parquet", {"Email": emails, "Seg": values})
    with caplog.at_level("INFO"):
        summary, _ = run(
            make_export(
                source=str(source), field_mapping={"email": "Email"}, segment_column="Seg", segments=["x"]
            )
        )
    text = caplog.text + "".join(capsys.readouterr())
    assert summary["rows_read"] == 0
    assert "No row of 'Seg' matches" in text
    assert "2 distinct values over 2 rows" in text
    for value in [*emails, *values]:
        assert value not in text
    for value in values:
        assert f"{value[0]}{'*' * (len(value) - 1)}" in text
