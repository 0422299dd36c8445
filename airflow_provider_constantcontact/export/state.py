"""Export state: what this task last put into its lists, one Parquet file (see docs/export-state.md).

One row per (list id, normalised email): the fingerprint of the JSON object last sent, a status
code (:data:`MEMBER` ... :data:`REMOVING`) and the contact id when known. Read back, the contact
ids stay in the file (a third of a state's memory, and a run needs a few of them): each row
keeps its position there (``file_row``), and the ids are read where needed or streamed into the
next file written (:mod:`.contact_ids`). The file's metadata names the lists, the mapping and
the account it belongs to, the watermark of the last change check and the membership count each
list should have. A run stages the state it will commit as a *journal* beside the state file
before changing anything; the state file itself is replaced (temporary name, then rename) only
once the run's imports and removals are confirmed, so a killed run leaves the previous state
usable and its journal tells the next run what it removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from airflow_provider_constantcontact.exceptions import ExportStateError
from airflow_provider_constantcontact.export.contact_ids import ContactIdFiles, IdFile, IdReader
from airflow_provider_constantcontact.export.rejects import ParquetOutput, output_path

FORMAT_VERSION = 1
#: Rows a row group of a state file (and of its journal, which the commit reads a group at a time).
ROW_GROUP_ROWS = 32_768
METADATA_KEY = b"constantcontact.export_state"

#: Status codes (int8). MEMBER: imported and confirmed; SENT: imported, confirmation pending;
#: LEFT: left the list outside the export (never imported into it again); UNSUBSCRIBED: account
#: level unsubscribe or deletion; IMPORTING / REMOVING: this run's changes, in the journal (and,
#: unconfirmed, in a state written with wait_for_completion=False).
MEMBER, SENT, LEFT, UNSUBSCRIBED, IMPORTING, REMOVING = 0, 1, 2, 3, 4, 5
STATUS_NAMES = {
    MEMBER: "member",
    SENT: "sent",
    LEFT: "left",
    UNSUBSCRIBED: "unsubscribed",
    IMPORTING: "importing",
    REMOVING: "removing",
}

SCHEMA = pa.schema(
    [
        pa.field("list_id", pa.dictionary(pa.int32(), pa.string())),
        pa.field("email", pa.string()),
        pa.field("fingerprint", pa.int64()),
        pa.field("status", pa.int8()),
        pa.field("contact_id", pa.string()),
    ]
)
#: In memory, each row read from a state file also has its position there (null: not from it),
#: and its contact id only when learned in this run (else it is read from the file when needed).
FILE_ROW = "file_row"
MEMORY_SCHEMA = SCHEMA.append(pa.field(FILE_ROW, pa.uint32()))


def fingerprints(objects: pa.Array) -> pa.Array:
    """A stable 64-bit fingerprint (int64) of each encoded JSON object: BLAKE2b, 8 bytes.

    Stable across processes and machines (unlike Python's randomised ``hash``): it is stored.
    """
    digest = hashlib.blake2b
    return pa.array(
        (
            int.from_bytes(digest(value, digest_size=8).digest(), "little", signed=True)
            for value in objects.cast(pa.binary()).to_pylist()
        ),
        pa.int64(),
        size=len(objects),
    )


def mapping_fingerprint(field_mapping: dict[str, str]) -> str:
    """A short fingerprint of the field mapping (field -> column), independent of key order."""
    encoded = json.dumps(sorted(field_mapping.items()), separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


def journal_path(path: str) -> str:
    """The journal beside ``path``: hidden (a leading dot), so never read as segment data."""
    head, slash, name = path.rpartition("/")
    return f"{head}{slash}.{name}.journal"


@dataclass(frozen=True)
class StateIdentity:
    """What a state file belongs to: the lists, the mapping and the account (API URL + client id)."""

    list_ids: tuple[str, ...]
    mapping: str
    account: str

    def problems(self, other: StateIdentity) -> list[str]:
        """How ``other`` (a file's identity) differs from this task's."""
        found = []
        if sorted(self.list_ids) != sorted(other.list_ids):
            found.append(
                f"it was written for the lists {sorted(other.list_ids)}, this task exports to "
                f"{sorted(self.list_ids)}"
            )
        if self.mapping != other.mapping:
            found.append("it was written for another field_mapping")
        if self.account != other.account:
            found.append(f"it was written for another account or connection ({other.account})")
        return found


@dataclass(frozen=True)
class StateMeta:
    """The file-level facts of a state (its Parquet metadata)."""

    identity: StateIdentity
    #: Server-side ``updated_at`` (ISO 8601) up to which changes were read; None: never read.
    watermark: str | None = None
    #: List id -> [low, high]: the membership count the list should have now (low == high when confirmed).
    members_expected: dict[str, list[int]] = field(default_factory=dict)
    #: When each list was last read in full (ISO 8601, server time when known).
    full_listing_at: dict[str, str] = field(default_factory=dict)
    #: Import and removal activities whose outcome the next run must check (wait_for_completion=False).
    pending_activity_ids: list[str] = field(default_factory=list)
    #: [start, end] (server time) of the last confirmed run's own imports and removals: the next
    #: change query skips that window (the count check covers others' changes inside it).
    own_changes: list[str] | None = None
    #: When the state was written (client clock, ISO 8601): the age check.
    written_at: str | None = None

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "format_version": FORMAT_VERSION,
                "list_ids": list(self.identity.list_ids),
                "mapping": self.identity.mapping,
                "account": self.identity.account,
                "watermark": self.watermark,
                "members_expected": self.members_expected,
                "full_listing_at": self.full_listing_at,
                "pending_activity_ids": self.pending_activity_ids,
                "own_changes": self.own_changes,
                "written_at": self.written_at,
                "status_codes": {str(code): name for code, name in STATUS_NAMES.items()},
            }
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes, where: str) -> StateMeta:
        try:
            data = json.loads(raw)
            version = data["format_version"]
        except (ValueError, KeyError, TypeError) as error:
            raise ExportStateError(
                f"{where} is not an export state file (its metadata cannot be read: {error}). Point "
                "state_path at a file only this task writes, or delete it to start afresh."
            ) from None
        if version != FORMAT_VERSION:
            raise ExportStateError(
                f"{where} has state format version {version}; this provider reads version "
                f"{FORMAT_VERSION}. Upgrade the provider, or delete the file to start afresh (a full run)."
            )
        return cls(
            identity=StateIdentity(tuple(data["list_ids"]), data["mapping"], data["account"]),
            watermark=data.get("watermark"),
            members_expected={k: list(v) for k, v in (data.get("members_expected") or {}).items()},
            full_listing_at=dict(data.get("full_listing_at") or {}),
            pending_activity_ids=list(data.get("pending_activity_ids") or []),
            own_changes=data.get("own_changes"),
            written_at=data.get("written_at"),
        )


@dataclass(frozen=True)
class ExportState:
    """A state in memory: the rows (Arrow, list_id and email as keys), the metadata, and the
    file the rows were read from (their contact ids are there), if any."""

    table: pa.Table
    meta: StateMeta
    #: Where the contact ids of the rows read from files (``file_row``) are.
    source: ContactIdFiles = field(default_factory=ContactIdFiles)

    @classmethod
    def empty(cls, identity: StateIdentity) -> ExportState:
        return cls(MEMORY_SCHEMA.empty_table(), StateMeta(identity))

    def with_table(self, table: pa.Table) -> ExportState:
        return replace(self, table=table)

    def for_list(self, list_id: str) -> pa.Table:
        """The rows of one list (list_id decoded away)."""
        # Compare dictionary indices, not decoded strings (36 bytes a row for a million rows).
        masks = []
        for chunk in self.table.column("list_id").chunks:
            position = chunk.dictionary.index(list_id).as_py()
            masks.append(
                pc.equal(chunk.indices, position)
                if position >= 0
                else pa.repeat(pa.scalar(False), len(chunk))
            )
        mine = pa.chunked_array(masks, pa.bool_())
        rows = self.table.drop_columns(["list_id"])
        if pc.all(mine).as_py() is not False:  # the one list of the state (or none): no copy
            return rows
        return rows.filter(mine)

    def with_meta(self, **changes: Any) -> ExportState:
        return replace(self, meta=replace(self.meta, **changes))

    def counts(self) -> dict[str, int]:
        """Status name -> rows (for logs and the summary)."""
        counted = pc.value_counts(self.table.column("status")).to_pylist()
        return {STATUS_NAMES[item["values"]]: item["counts"] for item in counted}


def state_table(list_id: str, table: pa.Table) -> pa.Table:
    """Rows of one list (email, fingerprint, status, contact_id[, file_row]) with the list id put back."""
    list_ids = pa.DictionaryArray.from_arrays(
        pa.repeat(pa.scalar(0, pa.int32()), table.num_rows), pa.array([list_id], pa.string())
    )
    file_rows = (
        table.column(FILE_ROW).cast(pa.uint32())
        if FILE_ROW in table.column_names
        else pa.nulls(table.num_rows, pa.uint32())
    )
    return pa.table(
        [
            list_ids,
            table.column("email").cast(pa.string()),
            table.column("fingerprint").cast(pa.int64()),
            table.column("status").cast(pa.int8()),
            table.column("contact_id").cast(pa.string()),
            file_rows,
        ],
        schema=MEMORY_SCHEMA,
    )


def read_state(
    path: str, conn_id: str | None, identity: StateIdentity, log: logging.Logger | Any
) -> ExportState | None:
    """The state at ``path``; None when there is none yet (a first run). Refuses another task's state."""
    target = output_path(path, conn_id)
    if not target.exists():
        log.info("No export state at %s yet: this is a first run (every list is read in full)", path)
        return None
    with target.open("rb") as handle:
        try:
            parquet = pq.ParquetFile(handle)
            raw = (parquet.schema_arrow.metadata or {}).get(METADATA_KEY)
            if raw is None:
                raise ExportStateError(
                    f"state_path {path} is a Parquet file but not an export state (no state metadata). "
                    "Point state_path at a file only this task writes; nothing was sent."
                )
            meta = StateMeta.from_json(raw, f"state_path {path}")
            problems = identity.problems(meta.identity)
            if problems:
                raise ExportStateError(
                    f"The export state at {path} belongs to another task: {'; '.join(problems)}. Give each "
                    "task its own state_path; if this task's lists, mapping or connection changed on "
                    "purpose, delete the file (the next run reads the lists in full). Nothing was sent."
                )
            table = read_row_groups(parquet, [name for name in SCHEMA.names if name != "contact_id"])
        except ExportStateError:
            raise
        except (OSError, pa.ArrowException) as error:
            raise ExportStateError(
                f"The export state at {path} cannot be read ({type(error).__name__}: {error}). Restore it "
                "from a backup, or delete it to start afresh (the next run reads the lists in full)."
            ) from None
    rows = table.num_rows
    table = table.replace_schema_metadata(None)
    table = table.append_column("contact_id", pa.nulls(rows, pa.string()))
    table = table.append_column(FILE_ROW, pa.array(range(rows), pa.uint32()))
    source = ContactIdFiles((IdFile(path, conn_id, 0, rows, (METADATA_KEY, raw)),))
    return ExportState(table.cast(MEMORY_SCHEMA), meta, source)


def read_row_groups(parquet: pq.ParquetFile, columns: list[str] | None = None) -> pa.Table:
    """The file's rows, one row group at a time: about a third less memory than one ``read()``."""
    if not parquet.num_row_groups:
        return parquet.read(columns=columns)
    return pa.concat_tables(
        [parquet.read_row_group(i, columns=columns, use_threads=False) for i in range(parquet.num_row_groups)]
    )


def write_state(path: str, state: ExportState, conn_id: str | None) -> None:
    """Write ``state`` to ``path`` atomically (temporary name, then rename); contact ids still in
    the file it was read from are streamed from there."""
    write_state_batches(path, state.meta, [state.table], conn_id, source=state.source)


def write_state_batches(
    path: str,
    meta: StateMeta,
    tables: Iterable[pa.Table],
    conn_id: str | None,
    *,
    source: ContactIdFiles | None = None,
) -> dict[str, int]:
    """Write the rows of ``tables`` with ``meta`` to ``path`` atomically; the status counts written."""
    output = ParquetOutput(path, SCHEMA.with_metadata({METADATA_KEY: meta.to_json()}), conn_id=conn_id)
    counts: Counter[str] = Counter()
    try:
        with _id_reader(source) as ids_at:
            for table in tables:
                counts.update(ExportState(table, meta).counts())
                for batch in table.to_batches(max_chunksize=ROW_GROUP_ROWS):
                    output.write(_file_batch(batch, ids_at))
    except BaseException:
        output.abort()
        raise
    output.close()
    return dict(counts)


@contextmanager
def _id_reader(source: ContactIdFiles | None) -> Iterator[IdReader | None]:
    if source is None or not source.files:
        yield None
        return
    with source.reader() as ids_at:
        yield ids_at


def _file_batch(batch: pa.RecordBatch, ids_at: IdReader | None) -> pa.RecordBatch:
    """A batch of rows as the file holds them: contact ids read back from the source file."""
    contact_ids = batch.column("contact_id")
    if FILE_ROW in batch.schema.names:
        file_rows = batch.column(FILE_ROW)
        if file_rows.null_count < len(file_rows):
            if ids_at is None:
                raise ExportStateError("State rows refer to an unknown state file (a bug: please report)")
            contact_ids = pc.coalesce(contact_ids, ids_at(file_rows))
    columns = [contact_ids if name == "contact_id" else batch.column(name) for name in SCHEMA.names]
    return pa.record_batch([c.cast(f.type) for c, f in zip(columns, SCHEMA, strict=True)], schema=SCHEMA)


def remove_file(path: str, conn_id: str | None) -> None:
    """Delete ``path`` when it exists (a spent journal)."""
    target = output_path(path, conn_id)
    if target.exists():
        target.fs.rm(target.path)
