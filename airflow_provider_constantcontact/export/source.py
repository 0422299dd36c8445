"""Resolve a segment source (file, folder, glob; local path or object-storage URI) to a dataset.

The export reads only the columns it needs, batch by batch, so the source is opened as a
``pyarrow.dataset`` over an explicit list of Parquet files in path order. Files may have differing
but compatible schemas (e.g. ``int32`` vs ``int64``, ``string`` vs ``large_string``, a dictionary
column in one file and plain strings in another): the needed columns are unified with Arrow's
permissive promotion. Folders written with Hive partitioning (``segment=vip/part-0.parquet``, as
Spark writes them) expose their partition keys as string columns, decoded as the writers encode
them (:func:`decode_partition_value`); a file holding a column of the same name keeps its own
values. Every problem names the file concerned:
an unreadable footer when the source is resolved, a missing column or incompatible types when
the dataset is made, and a corrupt data page, found only when scanning, through
:func:`find_unreadable_file` on the scan's error path.
"""

from __future__ import annotations

import posixpath
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from fsspec.utils import glob_translate

from airflow_provider_constantcontact.exceptions import SegmentSourceError

LOCAL_PROTOCOLS = frozenset({"", "file", "local"})
GLOB_CHARS = frozenset("*?[")
# Like pyarrow.dataset's defaults: "_SUCCESS", "_metadata", ".crc" files are not data.
IGNORED_PREFIXES = (".", "_")
#: The folder name Hive, Spark and pyarrow give a partition whose value is null.
HIVE_NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"


@dataclass(frozen=True)
class SourceEntry:
    """One entry of the ``source`` parameter as resolved: a file, a folder or a glob pattern."""

    kind: str  # "file", "folder" or "glob"
    path: str  # the file or folder, or the glob pattern, on the source's filesystem
    base: str  # the folder partition keys are read below

    def includes(self, path: str) -> bool:
        """Whether a file at ``path`` would be read as part of this entry."""
        if self.kind == "file":
            return path == self.path
        # fsspec's own glob semantics (what resolved the files): "*" stays within one folder.
        if self.kind == "glob" and not re.match(glob_translate(self.path), path):
            return False
        prefix = self.base.rstrip("/") + "/"
        return path.startswith(prefix) and _is_data_file(path[len(prefix) :])


@dataclass
class SegmentSource:
    """The resolved Parquet files of a segment and the filesystem they live on."""

    files: list[str]
    filesystem: pafs.FileSystem
    schemas: list[pa.Schema]
    #: (size, modification time) of each file when the source was resolved.
    versions: list[tuple[int | None, Any]]
    #: Hive partition keys and decoded values of each file (``{"segment": "vip"}``; None: null).
    partitions: list[dict[str, str | None]] = field(default_factory=list)
    entries: list[SourceEntry] = field(default_factory=list)
    protocol: str = ""

    def includes(self, path: str, protocol: str) -> bool:
        """Whether a file at ``path`` (on a filesystem of ``protocol``) is, or would be, read as input."""
        if _protocol_key(protocol) != _protocol_key(self.protocol):
            return False
        return any(entry.includes(path) for entry in self.entries)

    def check_unchanged(self) -> None:
        """Raise SegmentSourceError naming the files rewritten since the source was resolved.

        The export reads the source twice (classify, then encode); a file rewritten in between
        would misalign the two passes, so this runs before the second pass sends anything.
        """
        changed = [
            path
            for path, before, now in zip(
                self.files, self.versions, _versions(self.filesystem, self.files), strict=True
            )
            if before != now
        ]
        if changed:
            raise SegmentSourceError(
                f"Segment file(s) changed while the export was reading them: {', '.join(changed)}; "
                "nothing was sent. Run the export again once whatever writes them has finished."
            )

    @property
    def is_local(self) -> bool:
        """Whether the files are on the local filesystem (no network round trips)."""
        return isinstance(self.filesystem, pafs.LocalFileSystem)

    def dataset(self, columns: Sequence[str]) -> ds.FileSystemDataset:
        """A dataset over every file, restricted to ``columns`` with a unified schema.

        Raises SegmentSourceError when columns are missing from a file (naming them and listing
        the columns that file has) or when two files hold a column with incompatible types.
        """
        columns = list(dict.fromkeys(columns))
        partitions = self.partitions or [{} for _ in self.files]
        for path, schema, keys in zip(self.files, self.schemas, partitions, strict=True):
            missing = [column for column in columns if column not in schema.names and column not in keys]
            if missing:
                raise SegmentSourceError(
                    f"Column(s) {', '.join(map(repr, missing))} not found in {path}; "
                    f"the columns that exist are: {', '.join([*schema.names, *keys])}"
                )
        fields = []
        partition_columns = []
        for column in columns:
            typed = [
                (path, _plain(schema.field(column)))
                for path, schema in zip(self.files, self.schemas, strict=True)
                if column in schema.names
            ]
            folder_files = [
                path
                for path, schema in zip(self.files, self.schemas, strict=True)
                if column not in schema.names
            ]
            if folder_files:  # read from the folder names (text) where a file lacks the column
                partition_columns.append(column)
                typed.append((f"the folder names of {folder_files[0]}", pa.field(column, pa.string())))
            try:
                unified = pa.unify_schemas(
                    [pa.schema([field]) for _, field in typed], promote_options="permissive"
                )
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as err:
                kinds = "; ".join(f"{path}: {field.type}" for path, field in typed)
                raise SegmentSourceError(
                    f"Column {column!r} has incompatible types across files ({kinds})"
                ) from err
            fields.append(unified.field(column))
        expressions = [
            _partition_expression(
                keys, [column for column in partition_columns if column not in schema.names]
            )
            for keys, schema in zip(partitions, self.schemas, strict=True)
        ]
        return ds.FileSystemDataset.from_paths(
            self.files,
            schema=pa.schema(fields),
            format=ds.ParquetFileFormat(),
            filesystem=self.filesystem,
            partitions=expressions,
        )


def _plain(column: pa.Field) -> pa.Field:
    """A dictionary or view column as its plain type: files of one segment may encode a column any way.

    View types (``string_view``, ``binary_view``) are read as ``string``/``binary`` too: Arrow's
    filter and take kernels, which the export applies to every batch, do not support them.
    """
    if pa.types.is_dictionary(column.type):
        return _plain(column.with_type(column.type.value_type))
    if column.type == pa.string_view():
        return column.with_type(pa.string())
    if column.type == pa.binary_view():
        return column.with_type(pa.binary())
    return column


def _partition_expression(keys: dict[str, str | None], columns: list[str]) -> ds.Expression:
    """What a file's folder names say of ``columns`` (which the file itself does not hold)."""
    expression = ds.scalar(True)
    for column in columns:
        value = keys[column]
        expression = expression & (ds.field(column).is_null() if value is None else ds.field(column) == value)
    return expression


def _protocol_key(protocol: str | tuple[str, ...]) -> str:
    protocol = protocol[0] if isinstance(protocol, tuple) else protocol
    return "" if protocol in LOCAL_PROTOCOLS else protocol


def _partition_keys(relative_path: str) -> dict[str, str | None]:
    """``segment=vip/day=2/part-0.parquet`` -> ``{"segment": "vip", "day": "2"}`` (Hive style)."""
    keys: dict[str, str | None] = {}
    for part in relative_path.split("/")[:-1]:
        key, sep, value = part.partition("=")
        if sep and key:
            try:
                keys[urllib.parse.unquote(key, errors="strict")] = decode_partition_value(value)
            except UnicodeDecodeError as err:
                raise SegmentSourceError(
                    f"The folder name {part!r} of {relative_path} is not a Hive partition key=value "
                    f"that decodes to text ({err.reason}); rename the folder"
                ) from err
    return keys


def decode_partition_value(text: str) -> str | None:
    """A Hive folder name's value as its writer meant it; None for the null partition.

    pyarrow percent-encodes a value as a URI component (``Lapsed%2C%20high%20value``); Spark
    escapes only ``"#%'*/:=?\\{[]^``, control characters and DEL, as ``%XX``
    (``He said %22hi%22``), leaving spaces, commas and non-ASCII letters as they are. Decoding
    every ``%XX`` (UTF-8) reads both; a ``%`` not followed by two hex digits stays as written.
    """
    if text == HIVE_NULL_PARTITION:
        return None
    return urllib.parse.unquote(text, errors="strict")


def _as_list(source: str | Sequence[str]) -> list[str]:
    if isinstance(source, str):
        return [source]
    return [str(item) for item in source]


def _is_data_file(relative_path: str) -> bool:
    """False for ``_SUCCESS``, ``.crc`` and anything inside a ``_``/``.`` folder."""
    return not any(part.startswith(IGNORED_PREFIXES) for part in relative_path.split("/"))


def storage_path(path: str, conn_id: str | None = None) -> Any:
    """``path`` (a local path or a URI) as an ``ObjectStoragePath``, with ``conn_id``'s credentials."""
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(path, conn_id=conn_id) if conn_id else ObjectStoragePath(path)


def is_glob(path: str) -> bool:
    """Whether ``path`` holds a wildcard (``*``, ``?``, ``[``)."""
    return any(char in GLOB_CHARS for char in path)


def glob_base(pattern: str) -> str:
    """The folder a glob pattern starts in: everything before the segment of its first wildcard."""
    return pattern[: min(pattern.index(char) for char in GLOB_CHARS if char in pattern)].rpartition("/")[0]


def resolve_segment_source(source: str | Sequence[str], *, conn_id: str | None = None) -> SegmentSource:
    """Find the Parquet files of ``source`` and read their schemas (footers only).

    ``source`` is a file, a folder (all files below it, recursively, except names starting with
    ``.`` or ``_``), or a glob; a local path or any URI ``ObjectStoragePath`` understands
    (``file://``, ``s3://``, ...; ``conn_id`` supplies credentials). A list combines several.
    All entries must be on the same filesystem.
    """
    found_files: dict[str, dict[str, str | None]] = {}
    entries: list[SourceEntry] = []
    fsspec_fs: Any = None
    protocol = ""
    for entry in _as_list(source):
        entry = entry.strip()
        if not entry:
            raise SegmentSourceError("The segment source is empty")
        path = storage_path(entry, conn_id)
        fs, root = path.fs, path.path
        if fsspec_fs is None:
            fsspec_fs, protocol = fs, path.protocol or ""
        elif path.protocol != protocol:
            raise SegmentSourceError(
                f"All segment sources must use one filesystem, got {protocol!r} and {entry!r}"
            )
        if is_glob(root):
            static = glob_base(root)
            resolved = SourceEntry("glob", root, static)
            found = [p for p in fs.glob(root) if fs.isfile(p) and _is_data_file(posixpath.relpath(p, static))]
        elif fs.isdir(root):
            resolved = SourceEntry("folder", root, root)
            found = [p for p in fs.find(root) if _is_data_file(posixpath.relpath(p, root))]
        elif fs.isfile(root):
            resolved = SourceEntry("file", root, posixpath.dirname(root))
            found = [root]
        else:
            raise SegmentSourceError(f"Segment source {entry} does not exist")
        if not found:
            raise SegmentSourceError(f"No Parquet files found at {entry}")
        entries.append(resolved)
        for path in found:
            keys = _partition_keys(posixpath.relpath(path, resolved.base)) if resolved.kind != "file" else {}
            found_files.setdefault(path, keys)
    # Path order, whatever the order of the entries: it decides which duplicate row is kept.
    files = sorted(found_files)
    filesystem: pafs.FileSystem
    if protocol in LOCAL_PROTOCOLS:
        filesystem = pafs.LocalFileSystem()
    else:
        filesystem = pafs.PyFileSystem(pafs.FSSpecHandler(fsspec_fs))
    schemas = []
    for file in files:
        try:
            with filesystem.open_input_file(file) as handle:
                schemas.append(pq.read_schema(handle))
        except (pa.ArrowException, OSError) as err:
            raise SegmentSourceError(f"Cannot read {file} as Parquet: {err}") from err
    return SegmentSource(
        files=files,
        filesystem=filesystem,
        schemas=schemas,
        versions=_versions(filesystem, files),
        partitions=[found_files[path] for path in files],
        entries=entries,
        protocol=protocol,
    )


def _versions(filesystem: pafs.FileSystem, files: list[str]) -> list[tuple[int | None, Any]]:
    """(size, modification time) of each file, in one listing call."""
    return [(info.size, info.mtime) for info in filesystem.get_file_info(files)]


def find_unreadable_file(
    dataset: ds.FileSystemDataset, columns: Sequence[str], filter: ds.Expression | None = None
) -> SegmentSourceError | None:
    """For the error path of a failed scan: an error naming the first file that fails on its own.

    A file whose footer is fine but whose data pages are corrupt fails only while it is scanned,
    with an Arrow error that does not name it. This scans the files one at a time, with the same
    columns and filter, until one fails; None when none does (the failure was not the data's).
    """
    for fragment in dataset.get_fragments():
        try:
            for _ in fragment.to_batches(
                schema=dataset.schema, columns=list(columns), filter=filter, use_threads=False
            ):
                pass
        except (pa.ArrowException, OSError) as err:
            return SegmentSourceError(f"Cannot read {fragment.path} as Parquet: {str(err).strip()}")
    return None
