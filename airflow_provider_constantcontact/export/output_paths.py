"""Where the export's output files go, checked before anything changes: never the source, never each other.

Every output parameter (``rejects_path``, ``removals_path``, ...) is resolved to the file it
writes and to a *location* that compares spellings of one place equal: on the local filesystem
the real path (``..``, symlinks and relative paths resolved, relative to the worker's working
folder), on object storage the URL with ``.`` and ``..`` segments normalised. An output is
refused when the source reads that location (the source's file, or a data file its folders or
globs would read), when another output names the same place or a place inside it, or when it
names an existing folder without a trailing ``/``; then every output is written once as an empty
hidden temporary file (``.<name>.partial``, the one the writer uses) to prove it can be written.
A new output is one more entry in the mapping given to :func:`check_outputs`.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_constantcontact.exceptions import ExportOutputError
from airflow_provider_constantcontact.export.source import (
    LOCAL_PROTOCOLS,
    SegmentSource,
    SourceEntry,
    storage_path,
)


@dataclass(frozen=True)
class OutputFile:
    """One output as resolved: the parameter, the file written, its path and its location."""

    parameter: str
    #: The file as the user spelled it (a folder given with ``/`` gets its default file name).
    file: str
    #: The ``ObjectStoragePath`` written.
    path: Any
    #: The place compared with the source and the other outputs (see the module doc).
    location: str


def default_file_name(parameter: str) -> str:
    """The file an output parameter naming a folder gets: ``rejects_path`` -> ``rejects.parquet``."""
    return f"{parameter.removesuffix('_path')}.parquet"


def partial_path(target: Any) -> Any:
    """The hidden temporary file beside ``target``: one name per target, so a retry replaces it."""
    return target.parent / f".{target.name}.partial"


def check_outputs(
    source: SegmentSource, outputs: Mapping[str, str | None], conn_id: str | None
) -> dict[str, OutputFile]:
    """Resolve and check every output (parameter name -> rendered value; unset ones are skipped).

    Raises ExportOutputError naming the parameter when an output lies in the source, names the
    same place as another output, names an existing folder without ``/``, or cannot be written.
    """
    resolved = {
        parameter: _resolve(parameter, value, conn_id) for parameter, value in outputs.items() if value
    }
    for output in resolved.values():
        if _source_reads(source, output):
            raise ExportOutputError(
                f"{output.parameter} {output.file} lies inside the segment source: writing it would "
                "overwrite the segment or be read as part of it on the next run. Write it outside the "
                "source's files, folders and globs; nothing was sent."
            )
    ordered = list(resolved.values())
    for number, first in enumerate(ordered):
        for second in ordered[number + 1 :]:
            if _same_or_inside(first.location, second.location):
                raise ExportOutputError(
                    f"{first.parameter} {first.file} and {second.parameter} {second.file} name the same "
                    "place (or one lies inside the other): one file would replace the other. Give each "
                    "its own file; nothing was sent."
                )
    for output in ordered:
        _check_writable(output)
    return resolved


def _resolve(parameter: str, value: str, conn_id: str | None) -> OutputFile:
    file = value + default_file_name(parameter) if value.endswith("/") else value
    path = storage_path(file, conn_id)
    if not value.endswith("/") and path.is_dir():
        raise ExportOutputError(
            f"{parameter} {value} is an existing folder: end it with '/' to write "
            f"{value.rstrip('/')}/{default_file_name(parameter)} inside it, or name a file; nothing was sent."
        )
    if _is_local(path.protocol):
        location = os.path.realpath(path.path)
    else:
        location = f"{_protocol(path.protocol)}://{posixpath.normpath(path.path)}"
    return OutputFile(parameter, file, path, location)


def _source_reads(source: SegmentSource, output: OutputFile) -> bool:
    """Whether the source's files, folders or globs would read ``output``'s location."""
    if _is_local(output.path.protocol) != _is_local(source.protocol):
        return False
    normalise: Callable[[str], str]
    if _is_local(source.protocol):
        normalise = os.path.realpath
        location = output.location
    else:
        if _protocol(output.path.protocol) != _protocol(source.protocol):
            return False
        normalise = posixpath.normpath
        location = output.location.partition("://")[2]
    if location in {normalise(file) for file in source.files}:
        return True
    return any(_normalised_entry(entry, normalise).includes(location) for entry in source.entries)


def _normalised_entry(entry: SourceEntry, normalise: Callable[[str], str]) -> SourceEntry:
    """``entry`` with its folder resolved; a glob keeps its pattern below the resolved base."""
    base = normalise(entry.base or ".")
    if entry.kind == "glob":
        pattern = entry.path[len(entry.base) :].lstrip("/")
        return SourceEntry("glob", f"{base.rstrip('/')}/{pattern}", base)
    return SourceEntry(entry.kind, normalise(entry.path), base)


def _same_or_inside(first: str, second: str) -> bool:
    return first == second or first.startswith(second.rstrip("/") + "/") or second.startswith(first + "/")


def _check_writable(output: OutputFile) -> None:
    """Create the output's folder and its (empty) temporary file, then remove that file."""
    partial = partial_path(output.path)
    try:
        output.path.parent.mkdir(parents=True, exist_ok=True)
        with partial.open("wb"):
            pass
        partial.unlink()
    except OSError as err:
        raise ExportOutputError(
            f"{output.parameter} {output.file} cannot be written ({type(err).__name__}: {err}). Fix the "
            "path or its permissions; nothing was sent."
        ) from err


def _protocol(protocol: str | tuple[str, ...] | None) -> str:
    return (protocol[0] if isinstance(protocol, tuple) else protocol) or ""


def _is_local(protocol: str | tuple[str, ...] | None) -> bool:
    return _protocol(protocol) in LOCAL_PROTOCOLS
