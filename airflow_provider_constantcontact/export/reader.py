"""The selected rows of a segment, read batch by batch in a fixed order, and their column checks."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from airflow_provider_constantcontact.exceptions import SegmentSourceError
from airflow_provider_constantcontact.export import cleaning
from airflow_provider_constantcontact.export.fields import ContactPlan
from airflow_provider_constantcontact.export.settings import ExportSettings
from airflow_provider_constantcontact.export.source import SegmentSource, find_unreadable_file

READ_BATCH_ROWS = 32 * 1024
#: Distinct values of the segment column shown when the ``segments`` filter matches no row.
SEGMENT_VALUES_SHOWN = 10


class SegmentReader:
    """The selected rows of a segment, batch by batch, always in the same order."""

    def __init__(self, source: SegmentSource, settings: ExportSettings) -> None:
        self.source = source
        self.dataset = source.dataset(settings.columns)
        self.filter = self._segment_filter(settings.segment_column, settings.segments)
        self._arange = pa.array(range(READ_BATCH_ROWS), pa.uint32())

    def _segment_filter(self, column: str | None, segments: list[Any] | None) -> ds.Expression | None:
        if column is None or segments is None:
            return None
        column_type = self.dataset.schema.field(column).type
        try:
            values = pa.array(segments).cast(column_type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as err:
            raise ValueError(
                f"segments {segments!r} do not match the type {column_type} of {column!r}"
            ) from err
        return ds.field(column).isin(values)

    def batches(self, columns: list[str]) -> Iterator[pa.RecordBatch]:
        """Ordered batches (row numbers line up between the passes) with little read-ahead.

        Memory stays flat whatever the size of the segment. Coalesced read-ahead of whole row
        groups (pre_buffer) pays off on object storage only.
        """
        try:
            yield from self.dataset.to_batches(
                columns=columns,
                filter=self.filter,
                batch_size=READ_BATCH_ROWS,
                batch_readahead=2,
                fragment_readahead=1,
                fragment_scan_options=ds.ParquetFragmentScanOptions(pre_buffer=not self.source.is_local),
                use_threads=False,
            )
        except (pa.ArrowException, OSError) as err:
            # A corrupt data page fails without naming its file: find the file (error path only).
            named = find_unreadable_file(self.dataset, columns, self.filter)
            if named is None:
                raise
            raise named from err

    def row_numbers(self, offset: int, length: int) -> pa.Array:
        """``offset, offset + 1, ...`` (uint32) for a batch of ``length`` rows."""
        if length > len(self._arange):
            self._arange = pa.array(range(length), pa.uint32())
        return pc.add(self._arange.slice(0, length), pa.scalar(offset, pa.uint32()))

    def segment_values(self, column: str, segments: list[Any]) -> SegmentValues:
        """What ``column`` holds over the whole source (no filter), for the zero-match warning.

        Counted with Arrow kernels (distinct values in Arrow buffers, no Python object per row);
        only the few values shown become Python strings, and those are masked.
        """
        counts = []
        for batch in self.dataset.to_batches(columns=[column], use_threads=False):
            found = pc.value_counts(batch.column(0))
            counts.append(pa.table({"value": found.field("values"), "rows": found.field("counts")}))
        if counts:
            table = pa.concat_tables(counts).group_by("value").aggregate([("rows", "sum")])
            values, rows = table.column("value"), table.column("rows_sum")
        else:
            values, rows = (
                pa.chunked_array([], self.dataset.schema.field(column).type),
                pa.chunked_array([], pa.int64()),
            )
        top = pc.array_sort_indices(rows.combine_chunks(), order="descending")[:SEGMENT_VALUES_SHOWN]
        shown = [(mask_value(values[index].as_py()), rows[index].as_py()) for index in top.to_pylist()]
        loose_keys = _loose(values)
        near = {}
        for segment in segments:
            if isinstance(segment, str):
                matches = pc.equal(loose_keys, pa.scalar(segment.strip().lower()))
                near[segment] = pc.sum(pc.if_else(matches, rows, 0)).as_py() or 0
        return SegmentValues(
            rows=pc.sum(rows).as_py() or 0, distinct=len(values), most_common=shown, loose_matches=near
        )


@dataclass(frozen=True)
class SegmentValues:
    """Counts of a segment column's values, and its most common values masked: no value in clear."""

    rows: int
    distinct: int
    #: (masked value, rows) of the most common values.
    most_common: list[tuple[str, int]]
    #: Each text segment asked for -> rows whose value equals it but for case and surrounding spaces.
    loose_matches: dict[str, int]

    def describe(self) -> str:
        """One sentence for the log: counts, masked values, and the near matches."""
        shown = ", ".join(f"{value}: {rows:,}" for value, rows in self.most_common) or "none"
        near = [
            f"{segment!r} would match {rows:,} rows" for segment, rows in self.loose_matches.items() if rows
        ]
        hint = (
            "Compared without case and surrounding spaces, " + "; ".join(near)
            if near
            else "No value matches even without case and surrounding spaces"
        )
        return (
            f"The column holds {self.distinct:,} distinct values over {self.rows:,} rows; the most common "
            f"(masked: first character and length): {shown}. {hint}."
        )


def mask_value(value: Any) -> str:
    """A value shown in a log without showing it: its first character, then ``*`` for the rest.

    Whatever the column holds (segment labels, or by mistake names or mistyped emails), only one
    character and the length appear. Null is shown as ``null``.
    """
    if value is None:
        return "null"
    text = str(value)
    return repr(text[:1] + "*" * (len(text) - 1))


def _loose(values: pa.ChunkedArray) -> pa.Array:
    """Each value as text, lower-cased, without white space at either end (null when not text)."""
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        try:
            values = values.cast(pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return pa.nulls(len(values), pa.string())
    return pc.utf8_lower(pc.utf8_trim_whitespace(values.combine_chunks()))


def check_column_types(source: SegmentSource, plan: ContactPlan) -> None:
    """Fail, naming the column, its type and the file, for a type the export cannot send."""
    for path, schema in zip(source.files, source.schemas, strict=True):
        for spec in plan.specs:
            column = plan.field_mapping[spec.name]
            if column not in schema.names:
                continue  # a partition key: text
            column_type = schema.field(column).type
            ok = (
                cleaning.is_text_type(column_type)
                if spec.kind == "email"
                else cleaning.is_supported_type(column_type)
            )
            if not ok:
                wanted = "text (string or binary)" if spec.kind == "email" else "a scalar type"
                raise SegmentSourceError(
                    f"Column {column!r} (mapped to {spec.name!r}) holds {column_type} in {path}; "
                    f"it must hold {wanted}. Convert it in the query that writes the segment."
                )
