"""Write the rows an export did not send to Parquet, streaming, so that no row is lost silently.

The file holds the original mapped columns, as read, plus a ``reason`` column (a reject reason
or ``duplicate``). It is written on every run that names a path, even when every row was sent
(then it has no rows), so a file left over from an earlier run is never mistaken for this run's.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

REASON_COLUMN = "reason"


def _open_for_writing(path: str, conn_id: str | None) -> Any:
    """A writable binary file for a local path or an ``ObjectStoragePath`` URI."""
    from airflow.sdk import ObjectStoragePath

    target = ObjectStoragePath(path, conn_id=conn_id) if conn_id else ObjectStoragePath(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    return target.open("wb")


class RejectsWriter:
    """Collects rows not sent, batch by batch, into one Parquet file (``path``; ``conn_id`` for URIs).

    ``rows`` counts the rows written so far.
    """

    def __init__(self, path: str, schema: pa.Schema, *, conn_id: str | None = None) -> None:
        if REASON_COLUMN in schema.names:
            raise ValueError(f"A mapped column is named {REASON_COLUMN!r}; the rejects file needs that name")
        self.schema = schema.append(pa.field(REASON_COLUMN, pa.string()))
        self.rows = 0
        self._file = _open_for_writing(path, conn_id)
        self._writer = pq.ParquetWriter(self._file, self.schema)

    def write(self, rows: pa.RecordBatch, reasons: pa.Array) -> None:
        """Append ``rows`` (the mapped columns) with their reject ``reasons``."""
        if not rows.num_rows:
            return
        columns = [rows.column(i).cast(self.schema.field(i).type) for i in range(rows.num_columns)]
        batch = pa.record_batch([*columns, reasons.cast(pa.string())], schema=self.schema)
        self._writer.write_batch(batch)
        self.rows += rows.num_rows

    def close(self) -> None:
        """Finish the file (also when nothing was rejected)."""
        try:
            self._writer.close()
        finally:
            self._file.close()
