"""Data-aware scheduling and lineage of the segment export, kept out of the operator.

The export operator calls four things here:

* :func:`declare_lineage` in ``__init__``: the source becomes the task's inlet when it is itself
  an Asset (a URI, an ``ObjectStoragePath`` or an absolute local path, not a template or a glob),
  and :data:`CONTACT_LISTS_ALIAS` becomes one of its outlets, so that the task may emit events for
  lists known only at run time (a task may only emit events for its declared outlets).
* :func:`emit_list_events` once the imports were sent: one Asset event per contact list that the
  run changed (contacts imported into it, or members removed from it in mirror mode), through the
  alias. ``extra`` holds counts only. A plan-only run, or a run that sent nothing, emits none. Events are
  recorded only when the task succeeds, so emitting before the wait for the imports is safe.
* :func:`openlineage_facets` from ``get_openlineage_facets_on_complete``: the Parquet source as
  input, each changed list as output, with column-level lineage from ``field_mapping``. It imports
  the OpenLineage provider lazily: without ``apache-airflow-providers-openlineage`` nothing here
  imports it, and Airflow never calls the method.
* :func:`plain_source` in ``__init__``: an ``ObjectStoragePath`` source as the URI string the
  export reads (its connection id kept in the URI's user part).
"""

from __future__ import annotations

import logging
import os
import posixpath
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, AssetAlias

from airflow_provider_constantcontact.assets import (
    LISTS,
    OPENLINEAGE_NAMESPACE,
    contact_list_asset,
    normalize_list_id,
)
from airflow_provider_constantcontact.export.source import LOCAL_PROTOCOLS, glob_base, is_glob
from airflow_provider_constantcontact.utils.templated import (
    is_unset,
    optional_text,
    parse_bool,
    parse_list,
    parse_mapping,
)

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context

log = logging.getLogger(__name__)

#: The outlet every export task declares, and emits its list events through. Schedule a DAG on
#: it (``schedule=[CONTACT_LISTS_ALIAS]``) to run after any export changed any list.
CONTACT_LISTS_ALIAS = AssetAlias(name="constantcontact_contact_lists")

#: Where :func:`emit_list_events` leaves the run's summary for :func:`openlineage_facets` (the
#: OpenLineage listener runs in the task's process, on the same operator object, after success).
_SUMMARY_ATTRIBUTE = "_constantcontact_lineage_summary"


# -------------------------------------------------------------------------- source and inlets
def _is_object_storage_path(value: Any) -> bool:
    try:
        from airflow.sdk import ObjectStoragePath
    except ImportError:  # pragma: no cover - every supported Airflow has it
        return False
    return isinstance(value, ObjectStoragePath)


def _entries(source: Any) -> list[Any]:
    if source is None:
        return []
    if isinstance(source, str):  # one path: a rendered list is a list by now (see utils/templated.py)
        return parse_list(source, "source", literals=False)
    if _is_object_storage_path(source) or isinstance(source, os.PathLike):
        return [source]
    if isinstance(source, Iterable):
        return list(source)
    return [source]


def plain_source(source: Any) -> Any:
    """``source`` with each ``ObjectStoragePath`` (or ``os.PathLike``) turned into its string.

    ``str(ObjectStoragePath("s3://aws_default@bucket/key"))`` keeps the connection id, which the
    export's reader understands. Strings, templates and lists of strings come back unchanged.
    """
    if isinstance(source, str) or source is None:
        return source
    if _is_object_storage_path(source) or isinstance(source, os.PathLike):
        return str(source)
    if isinstance(source, Iterable) and not isinstance(source, Mapping):
        items = list(source)
        if any(_is_object_storage_path(item) or isinstance(item, os.PathLike) for item in items):
            return [item if isinstance(item, str) else str(item) for item in items]
    return source


def _is_template(text: str) -> bool:
    return "{{" in text or "{%" in text


def _split(entry: Any) -> tuple[str, str, str] | None:
    """(scheme, host, path) of one source entry; None for a template, a relative path or a glob."""
    text = str(entry).strip()
    if not text or _is_template(text) or is_glob(text):
        return None
    parsed = urllib.parse.urlsplit(text)
    scheme = parsed.scheme.lower()
    if len(scheme) == 1:  # a Windows drive letter, not a URI
        return None
    if scheme in LOCAL_PROTOCOLS:
        path = parsed.path if scheme else text
        if not posixpath.isabs(path):
            return None
        return "file", "", posixpath.normpath(path)
    host = parsed.netloc.rpartition("@")[2]  # the user part names an Airflow connection
    if not host:
        return None
    return scheme, host, parsed.path


def source_asset_uri(entry: Any) -> str | None:
    """The Asset URI of one source entry (credentials dropped), or None when it names no Asset."""
    parts = _split(entry)
    if parts is None:
        return None
    scheme, host, path = parts
    if scheme == "file":
        return f"file://{path}"
    return f"{scheme}://{host}{path}"


def source_inlets(source: Any) -> list[Asset]:
    """Assets for the entries of ``source`` that are Assets (see :func:`source_asset_uri`)."""
    uris = [source_asset_uri(entry) for entry in _entries(source)]
    return [Asset(uri=uri) for uri in dict.fromkeys(uri for uri in uris if uri)]


def declare_lineage(operator: BaseOperator, source: Any) -> None:
    """Add the source's Assets to ``operator.inlets`` and the list alias to its outlets."""
    inlets = list(operator.inlets or [])
    inlets += [asset for asset in source_inlets(source) if asset not in inlets]
    operator.inlets = inlets
    outlets = list(operator.outlets or [])
    if CONTACT_LISTS_ALIAS not in outlets:
        outlets.append(CONTACT_LISTS_ALIAS)
    operator.outlets = outlets


# ------------------------------------------------------------------------------- list events
def changed_lists(summary: Mapping[str, Any] | None) -> dict[str, dict[str, int]]:
    """list id -> the counts for its event, for every list the summarised run changed.

    A list changed when contacts were imported into it (``contacts_submitted`` > 0: each import
    adds its contacts to every list of the run) or, in mirror mode, members were removed from it
    (``removed: {list_id: count}``). Nothing for a plan-only run or a missing summary.
    """
    if not summary or summary.get("plan_only"):
        return {}
    submitted = int(summary.get("contacts_submitted") or 0)
    mirror = "removed" in summary
    removed: dict[str, int] = {}
    for list_id, count in (summary.get("removed") or {}).items():
        key = _asset_list_id(list_id)
        if key is not None:
            removed[key] = removed.get(key, 0) + int(count or 0)
    list_ids = [key for key in map(_asset_list_id, summary.get("list_ids") or []) if key is not None]
    changed: dict[str, dict[str, int]] = {}
    for list_id in dict.fromkeys([*list_ids, *removed]):
        counts = {"contacts_submitted": submitted if list_id in list_ids else 0}
        if mirror:
            counts["contacts_removed"] = removed.get(list_id, 0)
        if any(counts.values()):
            changed[list_id] = counts
    return changed


def _asset_list_id(list_id: Any) -> str | None:
    """The normalised id, or None (logged) for one that names no Asset: not a UUID."""
    try:
        return normalize_list_id(str(list_id))
    except ValueError:
        log.warning("Contact list id %r is not a UUID: no Asset event or lineage for it", list_id)
        return None


def emit_list_events(context: Context, summary: Mapping[str, Any] | None) -> list[Asset]:
    """Emit one Asset event per changed list through :data:`CONTACT_LISTS_ALIAS`; return the Assets.

    Call it where the export's summary is final for the lists (after the imports were sent, and
    again in ``execute_complete`` after a deferral, whose process has a fresh context). Only
    counts go into ``extra``. Needs the alias among the task's outlets (:func:`declare_lineage`).
    """
    task = context.get("task")
    if task is not None:
        object.__setattr__(task, _SUMMARY_ATTRIBUTE, dict(summary or {}))
    accessors = context.get("outlet_events")
    if accessors is None:  # not run by Airflow (a bare context): nothing to emit into
        return []
    changed = changed_lists(summary)
    if not changed:
        return []
    events = accessors[CONTACT_LISTS_ALIAS]
    emitted = []
    for list_id, counts in changed.items():
        asset = contact_list_asset(list_id)
        events.add(asset, extra=dict(counts))
        emitted.append(asset)
    return emitted


# ------------------------------------------------------------------------------- OpenLineage
def source_dataset_ids(source: Any) -> list[tuple[str, str]]:
    """(namespace, name) of each source entry, in OpenLineage's naming for files and object storage.

    Local files: namespace ``file``, name the absolute path. Object storage: namespace
    ``<scheme>://<bucket>``, name the key (``s3://bucket``, ``segments/2026/``). A glob is named
    by the folder before its first wildcard; a relative local path by its absolute form here.
    """
    ids: list[tuple[str, str]] = []
    for entry in _entries(plain_source(source)):
        text = str(entry).strip()
        if not text or _is_template(text):
            continue
        if is_glob(text):
            text = glob_base(text) or "/"
        parsed = urllib.parse.urlsplit(text)
        scheme = parsed.scheme.lower()
        if scheme in LOCAL_PROTOCOLS or len(scheme) == 1:
            path = parsed.path if scheme == "file" else text
            dataset = ("file", posixpath.normpath(os.path.abspath(path)))
        else:
            host = parsed.netloc.rpartition("@")[2]
            dataset = (f"{scheme}://{host}", parsed.path.strip("/") or "/")
        if dataset not in ids:
            ids.append(dataset)
    return ids


def _list_ids(value: Any) -> list[str]:
    """The operator's rendered ``list_ids``, read as the export reads them, as Asset list ids."""
    ids = (str(item).strip() for item in parse_list(value, "list_ids", split_commas=True, literals=False))
    return list(dict.fromkeys(key for key in map(_asset_list_id, ids) if key is not None))


def _column_lineage(
    field_mapping: Mapping[str, str], inputs: list[tuple[str, str]], segment_column: str | None
) -> Any:
    from openlineage.client.generated.column_lineage_dataset import (
        ColumnLineageDatasetFacet,
        Fields,
        InputField,
        Transformation,
    )

    def sources(column: str, transformation: Transformation) -> list[InputField]:
        return [
            InputField(namespace=namespace, name=name, field=column, transformations=[transformation])
            for namespace, name in inputs
        ]

    fields = {}
    for cc_field, column in field_mapping.items():
        if cc_field == "email":
            how = Transformation(
                type="DIRECT", subtype="TRANSFORMATION", description="trimmed and lower-cased"
            )
        else:
            how = Transformation(
                type="DIRECT",
                subtype="TRANSFORMATION",
                description="trimmed; over-long text truncated; empty values omitted",
            )
        fields[cc_field] = Fields(inputFields=sources(column, how))
    # Row selection, which OpenLineage calls indirect lineage of the whole dataset.
    filtered = sources(
        field_mapping["email"],
        Transformation(
            type="INDIRECT",
            subtype="FILTER",
            description="rows without a valid email are rejected; duplicate emails dropped",
        ),
    )
    if segment_column:
        filtered += sources(
            segment_column,
            Transformation(type="INDIRECT", subtype="FILTER", description="rows of the chosen segments"),
        )
    return ColumnLineageDatasetFacet(fields=fields, dataset=filtered)


def openlineage_facets(operator: BaseOperator, task_instance: Any = None) -> Any:
    """``OperatorLineage`` of a finished export: source input, changed lists as outputs.

    Reads the rendered operator (``source``, ``list_ids``, ``field_mapping``, ``segment_column``,
    ``plan_only``) and the summary :func:`emit_list_events` left on it. Without that summary (e.g.
    resumed after a deferral without its kwargs) every list of a run that is not plan-only counts as changed.
    """
    from airflow.providers.common.compat.openlineage.facet import (
        Dataset,
        OutputDataset,
        OutputStatisticsOutputDatasetFacet,
    )
    from airflow.providers.openlineage.extractors import OperatorLineage

    inputs = source_dataset_ids(getattr(operator, "source", None))
    summary = getattr(operator, _SUMMARY_ATTRIBUTE, None)
    if summary:
        changed = changed_lists(summary)
    elif parse_bool(getattr(operator, "plan_only", False), "plan_only"):
        changed = {}
    else:
        changed = {list_id: {} for list_id in _list_ids(getattr(operator, "list_ids", None))}
    mapping = parse_mapping(getattr(operator, "field_mapping", None) or {}, "field_mapping")
    field_mapping = {name: column for name, column in mapping.items() if not is_unset(column)}
    segment_column = getattr(operator, "segment_column", None)
    segment_column = (
        optional_text(segment_column, "segment_column") if isinstance(segment_column, str) else None
    )
    outputs = []
    for list_id, counts in changed.items():
        facets: dict[str, Any] = {}
        if "email" in field_mapping and inputs:
            facets["columnLineage"] = _column_lineage(field_mapping, inputs, segment_column)
        statistics: dict[str, Any] = {}
        if counts.get("contacts_submitted"):
            statistics["outputStatistics"] = OutputStatisticsOutputDatasetFacet(
                rowCount=counts["contacts_submitted"]
            )
        outputs.append(
            OutputDataset(
                namespace=OPENLINEAGE_NAMESPACE,
                name=f"{LISTS}/{list_id}",
                facets=facets,
                outputFacets=statistics,
            )
        )
    return OperatorLineage(
        inputs=[Dataset(namespace=namespace, name=name) for namespace, name in inputs],
        outputs=outputs,
    )
