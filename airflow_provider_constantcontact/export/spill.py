"""A table held in memory, or in a local temporary file while the memory is needed elsewhere.

Pass one's fingerprinted contacts (40 MB for a million) wait for the plan while a full listing
of a million members is read and reconciled: spilled meanwhile, the two never share the memory.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pyarrow as pa


class SpillableTable:
    """``table`` until :meth:`spill` writes it to a temporary file; :meth:`take` hands it back."""

    def __init__(self, table: pa.Table) -> None:
        self._table: pa.Table | None = table
        self._schema = table.schema
        self._directory: str | None = None

    def spill(self) -> None:
        """Write the table to a local temporary file and let it go from memory (once)."""
        if self._table is None or self._directory is not None:
            return
        self._directory = tempfile.mkdtemp(prefix="constantcontact-spill-")
        # Arrow's own file format, uncompressed: read back by mapping it, nothing to decode.
        with pa.OSFile(self._path, "wb") as sink, pa.ipc.new_file(sink, self._schema) as writer:
            writer.write_table(self._table)
        self._table = None

    def take(self) -> pa.Table:
        """The table (read back when spilled), handed over: this object no longer holds it."""
        table = self._table
        if table is None and self._directory is not None:
            # The table's buffers are the mapped file's pages (they stay valid once it is deleted).
            table = pa.ipc.open_file(pa.memory_map(self._path)).read_all()
        self._table = None
        self.close()
        return table if table is not None else self._schema.empty_table()

    def close(self) -> None:
        """Delete the temporary file, if any."""
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None

    @property
    def _path(self) -> str:
        assert self._directory is not None
        return os.path.join(self._directory, "table.arrow")
