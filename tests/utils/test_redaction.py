"""redact_emails: the one email-redaction function of the hook, its logs and activity summaries."""

from __future__ import annotations

import pytest

from airflow_provider_constantcontact.utils.redaction import redact_emails


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("jane@example.com", "<email>"),
        ("jane.doe@example.com", "<email>"),
        ("jane+newsletter@example.com", "<email>"),
        ("first.last+tag-1@mail.eu.example.co.uk", "<email>"),
        ("o'brien@example.ie", "<email>"),
        ("UPPER_case%x@Example.COM", "<email>"),
        ("josé@exämple.de", "<email>"),
        ("a@b-c.example.xn--p1ai", "<email>"),
    ],
)
def test_addresses_are_replaced_whole(text, expected):
    assert redact_emails(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Line 2: jane.doe@example.com is not allowed", "Line 2: <email> is not allowed"),
        ('Invalid email "jane@example.com" in row 3', 'Invalid email "<email>" in row 3'),
        ("Invalid email 'jane@example.com'.", "Invalid email '<email>'."),
        ("<jane@example.com>, (bob@example.org); [c@x.io]", "<<email>>, (<email>); [<email>]"),
        ("contact: jane@example.com.", "contact: <email>."),
        ("a@example.com,b@example.com", "<email>,<email>"),
    ],
)
def test_text_around_addresses_is_kept(text, expected):
    assert redact_emails(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "GET /v3/contacts?email=a.b@x.org&limit=1 HTTP/1.1",
            "GET /v3/contacts?email=<email>&limit=1 HTTP/1.1",
        ),
        ("GET /v3/contacts?email=a.b%40x.org&limit=1", "GET /v3/contacts?email=<email>&limit=1"),
        ("/v3/contacts?email=jane%2Bvip%40example.com", "/v3/contacts?email=<email>"),
    ],
)
def test_url_queries_lose_only_the_address(text, expected):
    assert redact_emails(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "no address here",
        "@handle and @ alone",
        "user@localhost",
        "price 5@10.00",
        "jane@",
        "@example.com",
        "trailing at@",
        "/v3/contacts?lists=0f6cd6b2-0000&limit=500",
        "",
    ],
)
def test_non_addresses_are_left_alone(text):
    assert redact_emails(text) == text


def test_non_strings_are_made_strings():
    assert redact_emails(["x@example.com"]) == "['<email>']"
    assert redact_emails(None) == "None"
