"""Write the rows an export did not send to Parquet, streaming, so that no row is lost silently.

The file holds the original mapped columns, as read, plus a ``reason`` column (a reject reason
or ``duplicate``). It is written on every run that names a path, even when every row was sent
(then it has no rows), so a file left over from an earlier run is never mistaken for this run's.
It is written under a hidden temporary name beside the target (one name per target, so a
retry replaces what a killed run left) and renamed into place only when complete: a run that
fails midway leaves the previous file as it was, never a truncated one. Where outputs may go is
:mod:`.output_paths`.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from airflow_provider_constantcontact.exceptions import ExportOutputError
from airflow_provider_constantcontact.export.output_paths import partial_path
from airflow_provider_constantcontact.export.source import storage_path

REASON_COLUMN = "reason"


def output_path(path: str, conn_id: str | None = None) -> Any:
    """The ``ObjectStoragePath`` of an output file (whose location ``check_outputs`` checked)."""
    return storage_path(path, conn_id)


def rejects_schema(columns: pa.Schema) -> pa.Schema:
    """The rejects file's schema: the mapped ``columns`` as read, then ``reason``."""
    if REASON_COLUMN in columns.names:
        raise ExportOutputError(
            f"A mapped column is named {REASON_COLUMN!r}, the column the rejects file adds for each row's "
            "reason: rename that column in the segment, or run without rejects_path; nothing was sent."
        )
    return columns.append(pa.field(REASON_COLUMN, pa.string()))


class ParquetOutput:
    """A Parquet file written batch by batch, published atomically by :meth:`close`.

    ``rows`` counts the rows written so far. :meth:`abort` drops what was written.
    """

    def __init__(self, path: str, schema: pa.Schema, *, conn_id: str | None = None) -> None:
        self.schema = schema
        self.rows = 0
        self.target = output_path(path, conn_id)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        # Hidden (a leading dot): never read as segment data, even inside a source folder.
        self._partial = partial_path(self.target)
        self._file = self._partial.open("wb")
        self._writer = pq.ParquetWriter(self._file, self.schema)

    def write(self, batch: pa.RecordBatch) -> None:
        """Append ``batch`` (of :attr:`schema`)."""
        if batch.num_rows:
            self._writer.write_batch(batch)
            self.rows += batch.num_rows

    def close(self) -> None:
        """Finish the file and move it into place (also when it has no rows)."""
        try:
            self._writer.close()
        finally:
            self._file.close()
        self._partial.fs.mv(self._partial.path, self.target.path)

    def abort(self) -> None:
        """Drop the partial file; the target keeps whatever it held before."""
        try:
            self._writer.close()
            self._file.close()
        finally:
            self._partial.fs.rm(self._partial.path)


class RejectsWriter(ParquetOutput):
    """The rows not sent: the mapped columns as read plus their ``reason`` (:func:`rejects_schema`)."""

    def write_rejects(self, rows: pa.RecordBatch, reasons: pa.Array) -> None:
        """Append ``rows`` (the mapped columns) with their reject ``reasons``."""
        if not rows.num_rows:
            return
        columns = [rows.column(i).cast(self.schema.field(i).type) for i in range(rows.num_columns)]
        self.write(pa.record_batch([*columns, reasons.cast(pa.string())], schema=self.schema))
