"""Constant Contact contact lists as Airflow Assets: ``constantcontact://lists/<list id>``.

:func:`contact_list_asset` is the one place that spells a list as an Asset. A DAG scheduled on it
runs when an export changed that list::

    from airflow_provider_constantcontact.assets import contact_list_asset

    with DAG("after_newsletter_refresh", schedule=[contact_list_asset("<list id>")]): ...

The URI scheme ``constantcontact`` is registered in the provider info (``asset-uris``), so Airflow
normalises every ``Asset("constantcontact://...")`` through :func:`sanitize_uri`: the list id is a
UUID (as in the list's URL in Constant Contact), compared case-insensitively, so it is lower-cased;
anything else (another host part, a path that is not one list id, a query, credentials, a port)
is rejected with a message that shows the expected form. List ids are unique across accounts, so
the URI names no account.

The same functions serve OpenLineage (:func:`convert_asset_to_openlineage`): a list is the dataset
``lists/<list id>`` in the namespace ``constantcontact``.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset

from airflow_provider_constantcontact.constants import LIST_ID_PATTERN

if TYPE_CHECKING:
    from urllib.parse import SplitResult

SCHEME = "constantcontact"
#: The URI's host part: what kind of Constant Contact object the path names.
LISTS = "lists"
#: OpenLineage namespace of every contact list (the service; list ids are globally unique).
OPENLINEAGE_NAMESPACE = SCHEME
EXPECTED_FORM = f"{SCHEME}://{LISTS}/<list id>, the list id a UUID (1c3f6a0e-5b2d-41ee-8c99-0242ac120002)"

_UUID = re.compile(LIST_ID_PATTERN)


def normalize_list_id(list_id: str) -> str:
    """The canonical (lower-case) form of a contact list id; ValueError when it is not a UUID."""
    if not isinstance(list_id, str):
        raise ValueError(f"A Constant Contact list id is a string (a UUID), got {type(list_id).__name__}")
    candidate = list_id.strip()
    if not _UUID.fullmatch(candidate):
        raise ValueError(
            f"{list_id!r} is not a Constant Contact list id: expected a UUID "
            "(8-4-4-4-12 hexadecimal digits, as in the list's URL in Constant Contact)"
        )
    return candidate.lower()


def contact_list_uri(list_id: str) -> str:
    """``constantcontact://lists/<list id>`` for a list id (normalised, validated)."""
    return f"{SCHEME}://{LISTS}/{normalize_list_id(list_id)}"


def contact_list_asset(list_id: str, *, extra: dict[str, Any] | None = None) -> Asset:
    """The Asset of one Constant Contact contact list; its name is its URI.

    Schedule a DAG on it (``schedule=[contact_list_asset(list_id)]``) to run whenever an export
    changed the list. The id is validated and lower-cased, so ids that differ only in case name
    the same Asset.
    """
    uri = contact_list_uri(list_id)
    return Asset(name=uri, uri=uri, extra=extra)


def list_id_from_uri(uri: str) -> str:
    """The list id of a ``constantcontact://lists/<list id>`` URI (validated)."""
    parsed = sanitize_uri(urllib.parse.urlsplit(uri))
    return parsed.path.lstrip("/")


# ---------------------------------------------------------------------------- provider hooks
def sanitize_uri(uri: SplitResult) -> SplitResult:
    """Normalise a ``constantcontact://`` URI for Airflow (the ``asset-uris`` handler).

    Airflow has already lower-cased the scheme, dropped the fragment and trailing slashes and
    sorted the query. Raises ValueError, naming the expected form, for anything that is not
    exactly one contact list.
    """
    text = urllib.parse.urlunsplit(uri)

    def bad(problem: str) -> ValueError:
        return ValueError(f"{problem}: {text!r}; expected {EXPECTED_FORM}")

    if uri.scheme.lower() != SCHEME:
        raise bad("Not a Constant Contact asset URI")
    if "@" in uri.netloc:
        raise bad("A Constant Contact asset URI holds no credentials")
    if ":" in uri.netloc:
        raise bad("A Constant Contact asset URI has no port")
    if uri.netloc.lower() != LISTS:
        raise bad("Only contact lists are Constant Contact assets")
    if uri.query:
        raise bad("A Constant Contact asset URI has no query")
    segments = [segment for segment in uri.path.split("/") if segment]
    if len(segments) != 1:
        raise bad("A Constant Contact asset URI names exactly one list")
    try:
        list_id = normalize_list_id(urllib.parse.unquote(segments[0]))
    except ValueError as err:
        raise ValueError(f"Invalid Constant Contact asset URI {text!r}: {err}") from None
    return uri._replace(scheme=SCHEME, netloc=LISTS, path=f"/{list_id}", query="", fragment="")


def create_asset(*, list_id: str, extra: dict[str, Any] | None = None) -> Asset:
    """The ``asset-uris`` factory: the Asset of a contact list (hook-level lineage collectors)."""
    return contact_list_asset(list_id, extra=extra)


def convert_asset_to_openlineage(asset: Asset, lineage_context: Any = None) -> Any:
    """The ``asset-uris`` OpenLineage converter: namespace ``constantcontact``, name ``lists/<id>``.

    Needs ``apache-airflow-providers-openlineage`` (imported here only).
    """
    from airflow.providers.common.compat.openlineage.facet import Dataset

    return Dataset(namespace=OPENLINEAGE_NAMESPACE, name=f"{LISTS}/{list_id_from_uri(asset.uri)}")
