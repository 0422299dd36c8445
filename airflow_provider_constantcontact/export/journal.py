"""The removals journal: each removal request's memberships on disk before the request is sent.

Mirror mode removes members 500 contact ids a request. Before each request its rows (``list_id``,
``contact_id``, ``email``, ``requested_at``) are written as one small Parquet file in the journal
folder beside the removals file (``<removals file>.journal/``), published atomically. Whatever
moment a run dies, every membership it may have removed is on record there. The removals file of
the next run that completes holds its own requests and every entry left by earlier runs; only
once that file is in place are those entries deleted. See docs/export-operator.md "Mirror mode".
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from airflow_provider_constantcontact.export.rejects import ParquetOutput, file_path
from airflow_provider_constantcontact.export.source import storage_path

#: One row per removed (or, when planning only, to-be-removed) membership; ``requested_at`` is when its
#: removal request was about to be sent (null when planning only: nothing is sent).
REMOVALS_SCHEMA = pa.schema(
    [
        pa.field("list_id", pa.string()),
        pa.field("contact_id", pa.string()),
        pa.field("email", pa.string()),
        pa.field("requested_at", pa.timestamp("us", tz="UTC")),
    ]
)
JOURNAL_SUFFIX = ".journal"


def journal_folder(removals_path: str) -> str:
    """Where the journal of ``removals_path`` lives: ``<removals file>.journal/``."""
    return file_path(removals_path) + JOURNAL_SUFFIX + "/"


def removal_rows(
    list_id: str, contact_ids: pa.Array, emails: pa.Array, requested_at: float | None
) -> pa.RecordBatch:
    """The rows of one list's removals (``requested_at`` a POSIX time, or None when planning only)."""
    count = len(contact_ids)
    when = None if requested_at is None else int(requested_at * 1_000_000)
    return pa.record_batch(
        [
            pa.repeat(pa.scalar(list_id, pa.string()), count),
            contact_ids.cast(pa.string()),
            emails.cast(pa.string()),
            pa.repeat(pa.scalar(when, REMOVALS_SCHEMA.field("requested_at").type), count),
        ],
        schema=REMOVALS_SCHEMA,
    )


class RemovalJournal:
    """The journal folder of one removals path: entries written ahead, read back, then deleted."""

    def __init__(self, removals_path: str, conn_id: str | None = None) -> None:
        self.path = journal_folder(removals_path)
        self.conn_id = conn_id
        self.folder = storage_path(self.path, conn_id)
        #: This run's entries, and the prefix that names them (time first: entries sort by age).
        self.written: list[Any] = []
        #: The entries earlier runs left (read before this run writes any).
        self.earlier = self.entries()
        self._prefix = f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:12]}"

    def entries(self) -> list[Any]:
        """The entries in the folder now (published ones: never a partial file), oldest first."""
        if not self.folder.exists():
            return []
        found = [
            entry
            for entry in self.folder.iterdir()
            if entry.name.endswith(".parquet") and not entry.name.startswith(".")
        ]
        return sorted(found, key=lambda entry: entry.name)

    def record(self, list_id: str, contact_ids: pa.Array, emails: pa.Array) -> None:
        """Write one request's memberships before the request is sent (returns once published)."""
        target = f"{self.path}{self._prefix}-{len(self.written):06d}.parquet"
        output = ParquetOutput(target, REMOVALS_SCHEMA, conn_id=self.conn_id)
        try:
            output.write(removal_rows(list_id, contact_ids, emails, time.time()))
        except BaseException:
            output.abort()
            raise
        output.close()
        self.written.append(output.target)

    @staticmethod
    def read(entries: list[Any]) -> pa.Table:
        """The rows of ``entries``, one row per membership (the latest request of each)."""
        tables = []
        for entry in entries:
            with entry.open("rb") as handle:
                tables.append(pq.read_table(handle, schema=REMOVALS_SCHEMA))
        if not tables:
            return REMOVALS_SCHEMA.empty_table()
        rows = pa.concat_tables(tables)
        # A membership asked twice (a run killed mid-request, then re-run): its latest request.
        latest = rows.group_by(["list_id", "contact_id"], use_threads=False).aggregate(
            [("email", "first"), ("requested_at", "max")]
        )
        columns = [latest["list_id"], latest["contact_id"], latest["email_first"], latest["requested_at_max"]]
        return pa.table(columns, schema=REMOVALS_SCHEMA).sort_by(
            [("requested_at", "ascending"), ("list_id", "ascending"), ("contact_id", "ascending")]
        )

    @staticmethod
    def delete(entries: list[Any]) -> None:
        """Delete entries whose rows are now in a published removals file."""
        for entry in entries:
            entry.unlink(missing_ok=True)
