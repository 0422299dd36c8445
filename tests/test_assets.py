"""Contact lists as Assets: the URI handler Airflow calls for ``constantcontact://`` and its helpers."""

from __future__ import annotations

import urllib.parse

import pytest
from airflow.sdk import Asset

from airflow_provider_constantcontact.assets import (
    contact_list_asset,
    contact_list_uri,
    convert_asset_to_openlineage,
    create_asset,
    list_id_from_uri,
    sanitize_uri,
)
from airflow_provider_constantcontact.get_provider_info import get_provider_info
from tests.airflow_compat import AIRFLOW

LIST_ID = "50acf410-0724-41af-b354-3c170e68ca6f"
URI = f"constantcontact://lists/{LIST_ID}"


def handled(uri: str) -> str:
    return urllib.parse.urlunsplit(sanitize_uri(urllib.parse.urlsplit(uri)))


def test_contact_list_asset_is_named_by_its_normalised_uri():
    asset = contact_list_asset(LIST_ID.upper())
    assert asset.uri == URI
    assert asset.name == URI
    assert asset == contact_list_asset(f"  {LIST_ID}  ")
    assert contact_list_uri(LIST_ID) == URI
    assert list_id_from_uri(URI) == LIST_ID
    assert create_asset(list_id=LIST_ID.upper()) == asset


@pytest.mark.parametrize(
    "uri",
    [
        URI,
        URI.upper().replace("CONSTANTCONTACT://", "constantcontact://"),
        f"constantcontact://LISTS/{LIST_ID.upper()}",
        f"constantcontact://lists//{LIST_ID}/",
        f"constantcontact://lists/{LIST_ID}#members",
    ],
)
def test_handler_normalises_case_and_slashes(uri):
    # What Airflow hands the handler: the scheme lower-cased, fragment and trailing slashes dropped.
    assert handled(uri) == URI
    assert Asset(uri=uri).uri == URI


def test_airflow_uses_the_registered_handler():
    """Through the provider info, not through our own helper: Asset() normalises the URI."""
    from airflow.sdk.definitions.asset import _get_uri_normalizer

    assert _get_uri_normalizer("constantcontact") is sanitize_uri
    assert Asset(uri=f"ConstantContact://Lists/{LIST_ID.upper()}/").uri == URI
    assert Asset(uri=URI).normalized_uri == URI
    (entry,) = get_provider_info()["asset-uris"]
    assert entry["schemes"] == ["constantcontact"]


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("constantcontact://lists/not-a-list-id", r"'not-a-list-id' is not a Constant Contact list id"),
        (f"constantcontact://lists/{LIST_ID[:-1]}", "expected a UUID"),
        (f"constantcontact://contacts/{LIST_ID}", "Only contact lists are Constant Contact assets"),
        ("constantcontact://lists", "names exactly one list"),
        (f"constantcontact://lists/{LIST_ID}/members", "names exactly one list"),
        (f"constantcontact://lists/{LIST_ID}?status=active", "has no query"),
        (f"constantcontact://lists:443/{LIST_ID}", "has no port"),
        (f"constantcontact://admin@lists/{LIST_ID}", "holds no credentials"),
        (f"constantcontact:///{LIST_ID}", "Only contact lists"),
    ],
)
def test_handler_rejects_bad_uris_with_the_expected_form(uri, message):
    with pytest.raises(ValueError, match=message) as raised:
        handled(uri)
    assert "constantcontact://lists/<list id>" in str(raised.value) or "UUID" in str(raised.value)
    if AIRFLOW < (3, 1) and "@" in uri:
        # Airflow 3.0 drops user info itself (with a warning) before it calls the handler.
        with pytest.warns(UserWarning, match="should not contain auth info"):
            assert Asset(uri=uri).uri == URI
        return
    with pytest.raises(ValueError, match=message):
        Asset(uri=uri)


@pytest.mark.parametrize("bad", ["", "Newsletter", f"{{{LIST_ID}}}", f"urn:uuid:{LIST_ID}", 42])
def test_contact_list_asset_rejects_what_is_not_a_list_id(bad):
    with pytest.raises(ValueError, match="list id"):
        contact_list_asset(bad)


def test_openlineage_converter_names_the_list_in_the_constantcontact_namespace():
    pytest.importorskip("airflow.providers.openlineage")
    dataset = convert_asset_to_openlineage(contact_list_asset(LIST_ID.upper()), None)
    assert (dataset.namespace, dataset.name) == ("constantcontact", f"lists/{LIST_ID}")
