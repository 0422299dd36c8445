"""What ``as_text`` makes of every Arrow type: the table in docs/export-operator.md, value by value.

tests/operators/test_messy_inputs.py checks the same over HTTP; this pins the odd values.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest

from airflow_provider_constantcontact.exceptions import SegmentSourceError
from airflow_provider_constantcontact.export.cleaning import as_text, is_supported_type, is_text_type
from airflow_provider_constantcontact.export.engine import check_column_types
from airflow_provider_constantcontact.export.fields import ContactPlan
from airflow_provider_constantcontact.export.source import resolve_segment_source

NEW_YORK = ZoneInfo("America/New_York")

CASES = [
    # (values, type, text sent per value; None = omitted)
    (["a", None, ""], pa.string(), ["a", None, ""]),
    (["a"], pa.large_string(), ["a"]),
    (["a"], pa.string_view(), ["a"]),
    ([b"caf\xc3\xa9", b"\xff"], pa.binary(), ["café", None]),
    ([b"x"], pa.large_binary(), ["x"]),
    ([b"x", b"\xc3("], pa.binary_view(), ["x", None]),
    ([None], pa.null(), [None]),
    ([True, False, None], pa.bool_(), ["true", "false", None]),
    ([42, -7, None], pa.int64(), ["42", "-7", None]),
    ([200], pa.uint8(), ["200"]),
    (
        [5551234.0, 1.5, -0.0, float("nan"), float("inf"), float("-inf"), None],
        pa.float64(),
        ["5551234", "1.5", "0", None, None, None, None],
    ),
    ([2134.0, 0.25], pa.float32(), ["2134", "0.25"]),
    ([1.5, 2.0], pa.float16(), ["1.5", "2"]),
    ([2.0**53, 1e-7], pa.float64(), ["9.007199254740992e+15", "1e-7"]),
    ([Decimal("12.50"), Decimal("-0.01")], pa.decimal128(10, 2), ["12.50", "-0.01"]),
    ([dt.date(2024, 1, 2)], pa.date32(), ["2024-01-02"]),
    ([dt.date(2024, 1, 2)], pa.date64(), ["2024-01-02"]),
    ([dt.datetime(2024, 1, 2, 3, 4, 5), None], pa.timestamp("us"), ["2024-01-02T03:04:05", None]),
    ([dt.datetime(2024, 1, 2, 3, 4, 5, 250000)], pa.timestamp("ms"), ["2024-01-02T03:04:05.250"]),
    (
        [dt.datetime(2024, 1, 1, 22, 4, 5, tzinfo=NEW_YORK)],
        pa.timestamp("s", "America/New_York"),
        ["2024-01-02T03:04:05Z"],
    ),
    ([dt.datetime(2024, 7, 1, 12, 0, tzinfo=dt.UTC)], pa.timestamp("ns", "UTC"), ["2024-07-01T12:00:00Z"]),
    ([dt.time(3, 4, 5)], pa.time32("s"), ["03:04:05"]),
]


@pytest.mark.parametrize(("values", "data_type", "expected"), CASES, ids=[str(case[1]) for case in CASES])
def test_as_text(values, data_type: pa.DataType, expected) -> None:
    assert is_supported_type(data_type)
    array = pa.array(values, data_type)
    text = as_text(array)
    assert text.values.type == pa.string()
    assert text.values.to_pylist() == expected


def test_a_timestamp_has_a_fraction_only_when_it_has_one_whatever_its_neighbours() -> None:
    values = [dt.datetime(2024, 1, 2, 3, 4, 5), None, dt.datetime(2024, 1, 2, 3, 4, 5, 500000)]
    for unit in ("ms", "us", "ns"):
        text = as_text(pa.array(values, pa.timestamp(unit))).values.to_pylist()
        assert text[:2] == ["2024-01-02T03:04:05", None]
        assert text[2].startswith("2024-01-02T03:04:05.500")
    zoned = pa.array(values, pa.timestamp("ms", "Asia/Kolkata"))  # naive values are UTC instants
    assert as_text(zoned).values.to_pylist() == ["2024-01-02T03:04:05Z", None, "2024-01-02T03:04:05.500Z"]


def test_dictionary_columns_are_decoded() -> None:
    assert as_text(pa.array(["b", "a", None, "b"]).dictionary_encode()).values.to_pylist() == [
        "b",
        "a",
        None,
        "b",
    ]
    assert as_text(pa.array([3, 1]).dictionary_encode()).values.to_pylist() == ["3", "1"]


def test_invalid_utf8_is_flagged_per_value() -> None:
    bad = pa.array([b"ok", b"\xff", None, b"\xe2\x82"], pa.binary()).view(pa.string())
    text = as_text(bad)
    assert text.values.to_pylist() == ["ok", None, None, None]
    assert text.bad_utf8 is not None
    assert text.bad_utf8.to_pylist() == [False, True, False, True]
    assert as_text(pa.array(["fine"])).bad_utf8 is None


@pytest.mark.parametrize(
    "data_type",
    [
        pa.list_(pa.string()),
        pa.large_list(pa.int64()),
        pa.struct([("a", pa.string())]),
        pa.map_(pa.string(), pa.string()),
        pa.duration("s"),
        pa.month_day_nano_interval(),
        pa.binary(4),
        pa.dictionary(pa.int32(), pa.list_(pa.string())),
    ],
)
def test_types_that_cannot_be_sent(data_type: pa.DataType) -> None:
    assert not is_supported_type(data_type)
    assert not is_text_type(data_type)


@pytest.mark.parametrize(
    "data_type", [pa.string(), pa.large_string(), pa.string_view(), pa.binary(), pa.binary_view(), pa.null()]
)
def test_email_column_types(data_type: pa.DataType) -> None:
    assert is_text_type(data_type)
    assert is_text_type(pa.dictionary(pa.int32(), pa.string()))
    assert not is_text_type(pa.int64())


def test_a_nested_mapped_column_fails_naming_column_type_and_file(tmp_path) -> None:
    import pyarrow.parquet as pq

    path = tmp_path / "segment.parquet"
    pq.write_table(pa.table({"Email": ["a@example.com"], "Tags": pa.array([["x", "y"]])}), path)
    source = resolve_segment_source(str(path))
    check_column_types(source, ContactPlan({"email": "Email"}))
    with pytest.raises(SegmentSourceError) as caught:
        check_column_types(source, ContactPlan({"email": "Email", "cf:tags": "Tags"}))
    message = str(caught.value)
    assert "'Tags'" in message
    assert "'cf:tags'" in message
    assert "list<" in message
    assert str(path) in message
