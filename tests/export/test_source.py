"""Unit tests of segment source resolution: files, folders, globs, URIs, schemas, errors."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_constantcontact.exceptions import SegmentSourceError
from airflow_provider_constantcontact.export.source import (
    find_unreadable_file,
    resolve_segment_source,
)


def _write(path: Path, table: pa.Table) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "segment"
    _write(root / "part-0.parquet", pa.table({"email": ["a@example.com"], "n": pa.array([1], pa.int32())}))
    _write(
        root / "day=2" / "part-1.parquet",
        pa.table({"email": pa.array(["b@example.com"], pa.large_string()), "n": pa.array([2], pa.int64())}),
    )
    (root / "_SUCCESS").write_text("")
    (root / ".part-0.parquet.crc").write_text("junk")
    _write(root / "_temporary" / "x.parquet", pa.table({"other": [1]}))
    return root


def test_folder_reads_every_data_file_recursively_with_unified_schema(folder: Path) -> None:
    source = resolve_segment_source(str(folder))
    assert {Path(f).name for f in source.files} == {"part-0.parquet", "part-1.parquet"}
    table = source.dataset(["email", "n"]).to_table()
    assert sorted(table.column("email").to_pylist()) == ["a@example.com", "b@example.com"]
    assert table.schema.field("n").type == pa.int64()


def test_glob_file_uri_and_list(folder: Path) -> None:
    assert len(resolve_segment_source(str(folder / "**" / "*.parquet")).files) == 2
    assert len(resolve_segment_source(f"file://{folder}/part-0.parquet").files) == 1
    both = resolve_segment_source([str(folder / "part-0.parquet"), str(folder / "day=2" / "part-1.parquet")])
    assert both.dataset(["email"]).count_rows() == 2


def test_non_parquet_file_is_named(tmp_path: Path) -> None:
    _write(tmp_path / "good.parquet", pa.table({"email": ["a@example.com"]}))
    (tmp_path / "notes.csv").write_text("email\na@example.com\n")
    with pytest.raises(SegmentSourceError, match=r"Cannot read .*notes\.csv as Parquet"):
        resolve_segment_source(str(tmp_path))


def test_missing_source_and_empty_glob(tmp_path: Path) -> None:
    with pytest.raises(SegmentSourceError, match="does not exist"):
        resolve_segment_source(str(tmp_path / "nope.parquet"))
    with pytest.raises(SegmentSourceError, match="No Parquet files found"):
        resolve_segment_source(str(tmp_path / "*.parquet"))


def test_incompatible_types_and_missing_columns_are_named(tmp_path: Path) -> None:
    _write(tmp_path / "a.parquet", pa.table({"email": ["a@example.com"], "n": [1]}))
    _write(tmp_path / "b.parquet", pa.table({"email": ["b@example.com"], "n": [[1, 2]]}))
    source = resolve_segment_source(str(tmp_path))
    with pytest.raises(SegmentSourceError, match=r"Column 'n' has incompatible types"):
        source.dataset(["n"])
    with pytest.raises(
        SegmentSourceError,
        match=r"Column\(s\) 'zzz', 'yyy' not found in .*a\.parquet; the columns that exist are: email, n",
    ):
        source.dataset(["email", "zzz", "yyy"])


def write_corrupt_data_page(path: Path) -> Path:
    """A Parquet file with an intact footer and garbage in the middle of a column's data page.

    Uncompressed PLAIN strings, so that the overwritten length prefixes make the scan fail.
    """
    rows = 2000
    table = pa.table({"email": [f"user{i}@example.com" for i in range(rows)], "n": list(range(rows))})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="NONE", use_dictionary=False)
    chunk = pq.ParquetFile(path).metadata.row_group(0).column(0)
    middle = chunk.data_page_offset + chunk.total_compressed_size // 2
    data = bytearray(path.read_bytes())
    data[middle : middle + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    return path


def test_corrupt_data_page_fails_only_when_scanned_and_find_unreadable_file_names_it(
    tmp_path: Path,
) -> None:
    _write(tmp_path / "a.parquet", pa.table({"email": ["a@example.com"], "n": [1]}))
    bad = write_corrupt_data_page(tmp_path / "b.parquet")
    _write(tmp_path / "c.parquet", pa.table({"email": ["c@example.com"], "n": [3]}))
    source = resolve_segment_source(str(tmp_path))  # the footers are fine
    dataset = source.dataset(["email"])
    with pytest.raises(pa.ArrowInvalid) as scan_error:  # a scan-time failure, not naming the file
        dataset.to_table()
    assert "b.parquet" not in str(scan_error.value)

    error = find_unreadable_file(dataset, ["email"])
    assert isinstance(error, SegmentSourceError)
    assert str(error).startswith(f"Cannot read {bad} as Parquet: ")
    assert "user" not in str(error)  # no values from the data
    assert find_unreadable_file(source.dataset(["n"]), ["n"]) is None  # the "n" pages are intact


def test_check_unchanged_names_a_file_rewritten_after_resolving(folder: Path) -> None:
    source = resolve_segment_source(str(folder))
    source.check_unchanged()  # nothing changed yet

    _write(folder / "day=2" / "part-1.parquet", pa.table({"email": ["b@example.com", "c@example.com"]}))

    with pytest.raises(
        SegmentSourceError, match=r"changed while the export .*day=2/part-1\.parquet; nothing"
    ) as err:
        source.check_unchanged()
    assert "part-0.parquet" not in str(err.value)
