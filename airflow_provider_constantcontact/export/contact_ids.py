"""Contact ids kept on disk: a state's own (in its file) and a full listing's (spilled as read).

A million contact ids are 40 MB of strings and a run needs a few of them (the removals); the
rest only pass from one file to the next. So the state rows keep a position (``file_row``) in
:class:`ContactIdFiles` (the state file read, then each listing spilled in this run, numbered
one after the other) and the ids are read back a row group at a time where they are needed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from airflow_provider_constantcontact.exceptions import ExportStateError
from airflow_provider_constantcontact.export.lookup import one_array
from airflow_provider_constantcontact.export.rejects import output_path

#: Reads the contact ids at file rows (null where the row is null).
IdReader = Callable[[pa.Array | pa.ChunkedArray], pa.Array]

_IDS = pa.schema([pa.field("contact_id", pa.string())])


@dataclass(frozen=True)
class IdFile:
    """A Parquet file with a ``contact_id`` column, holding file rows ``first_row`` onwards."""

    path: str
    conn_id: str | None
    first_row: int
    rows: int
    #: (metadata key, value) the file must still carry when read again (a state file: the same
    #: file as was read); None for a spill of this run.
    must_carry: tuple[bytes, bytes] | None = None


@dataclass(frozen=True)
class ContactIdFiles:
    """The files the state rows' contact ids are in, each for its range of file rows."""

    files: tuple[IdFile, ...] = ()

    @property
    def next_row(self) -> int:
        """The first file row a file added now would hold."""
        return self.files[-1].first_row + self.files[-1].rows if self.files else 0

    def with_file(self, file: IdFile) -> ContactIdFiles:
        return replace(self, files=(*self.files, file))

    @contextmanager
    def reader(self) -> Iterator[IdReader]:
        """A reader of the ids at given file rows, a row group at a time (the last one kept:
        rows in file order read each group once)."""
        with ExitStack() as stack:
            groups: list[tuple[int, int, pq.ParquetFile, int]] = []  # begin, end, file, group
            for file in self.files:
                parquet = pq.ParquetFile(stack.enter_context(output_path(file.path, file.conn_id).open("rb")))
                if file.must_carry is not None:
                    key, value = file.must_carry
                    if (parquet.schema_arrow.metadata or {}).get(key) != value:
                        raise ExportStateError(
                            f"The export state at {file.path} changed while this run used it (another run "
                            "of this task at the same time?). Nothing was committed; run the task again."
                        )
                begin = file.first_row
                for index in range(parquet.num_row_groups):
                    rows = parquet.metadata.row_group(index).num_rows
                    groups.append((begin, begin + rows, parquet, index))
                    begin += rows
            cached: dict[tuple[int, int], pa.Array] = {}

            def group_ids(parquet: pq.ParquetFile, index: int) -> pa.Array:
                key = (id(parquet), index)
                if key not in cached:
                    cached.clear()
                    read = parquet.read_row_group(index, columns=["contact_id"], use_threads=False)
                    cached[key] = read.column(0).combine_chunks()
                return cached[key]

            def at(file_rows: pa.Array | pa.ChunkedArray) -> pa.Array:
                rows = one_array(file_rows)
                found = pa.nulls(len(rows), pa.string())
                low, high = pc.min_max(rows).values()
                if not low.is_valid:
                    return found
                for begin, end, parquet, index in groups:
                    if end <= low.as_py() or begin > high.as_py():
                        continue
                    inside = pc.fill_null(pc.and_(pc.greater_equal(rows, begin), pc.less(rows, end)), False)
                    local = pc.subtract(rows.filter(inside), pa.scalar(begin, rows.type))
                    found = pc.replace_with_mask(found, inside, group_ids(parquet, index).take(local))
                return found

            yield at


class ListingSpill:
    """A full listing's contact ids, written to a local temporary file as they are read."""

    def __init__(self, directory: str, name: str, first_row: int) -> None:
        self.path = os.path.join(directory, f"{name}.parquet")
        self.first_row = first_row
        self.rows = 0
        self._writer = pq.ParquetWriter(self.path, _IDS)

    def add(self, contact_ids: pa.Array | pa.ChunkedArray) -> pa.Array:
        """Write ``contact_ids`` (one row group); their file rows (uint32)."""
        self._writer.write_table(pa.table([contact_ids], schema=_IDS))
        start = self.first_row + self.rows
        self.rows += len(contact_ids)
        return pa.array(range(start, start + len(contact_ids)), pa.uint32())

    def close(self) -> IdFile:
        self._writer.close()
        return IdFile(self.path, None, self.first_row, self.rows)
