"""Unit tests of the vectorised cleaning, JSON encoding and de-duplication."""

from __future__ import annotations

import json
import random

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from airflow_provider_constantcontact.export import cleaning as cc
from airflow_provider_constantcontact.export import fields
from airflow_provider_constantcontact.export.dedup import EmailDeduplicator, email_hashes
from airflow_provider_constantcontact.export.encoding import contact_json

NASTY = [
    'He said "hi"',
    "back\\slash \\\\ double",
    "line\nbreak\ttab\rcr\x00nul\x1fus\x7fdel\x08bs\x0cff",
    "ünïcödé ©ø 😀 中文",
    "  padded  ",
    "\u00a0nbsp\u00a0",
    'mixed \\" quote-escape',
    "</script>&amp;",
    "\u2028sep\u2029",
]


def _plan(**extra: str) -> fields.ContactPlan:
    return fields.ContactPlan({"email": "E", **extra})


def test_email_normalisation_and_reasons() -> None:
    emails = pa.array(
        [
            "  Jane.Doe@Example.COM ",
            "\u00a0jane.doe@example.com\u00a0",
            None,
            "   ",
            "no-at-sign",
            "a@b",
            "two@@example.com",
            "dot.@example.com",
            "x@-bad.com",
            f"{'a' * 39}@example.com",  # 51 characters
            f"{'a' * 38}@example.com",  # 50 characters
            "üser@example.com",
            "ok+tag@sub.example.co.uk",
        ]
    )
    normalised = cc.normalize_emails(emails)
    codes = cc.email_codes(normalised).to_pylist()
    assert normalised[0].as_py() == "jane.doe@example.com"
    assert normalised[1].as_py() == "jane.doe@example.com"
    assert codes == [
        fields.OK,
        fields.OK,
        fields.MISSING_EMAIL,
        fields.MISSING_EMAIL,
        fields.INVALID_EMAIL,
        fields.INVALID_EMAIL,
        fields.INVALID_EMAIL,
        fields.INVALID_EMAIL,
        fields.INVALID_EMAIL,
        fields.EMAIL_TOO_LONG,
        fields.OK,
        fields.INVALID_EMAIL,
        fields.OK,
    ]


def test_nasty_values_round_trip_through_json() -> None:
    plan = _plan(first_name="F", **{"cf:note": "N"})
    rows = len(NASTY)
    batch = pa.record_batch(
        {
            "E": [f"user{i}@example.com" for i in range(rows)],
            "F": NASTY,
            "N": list(reversed(NASTY)),
        }
    )
    encoded = contact_json(batch, plan, {}).to_pylist()
    for i, text in enumerate(encoded):
        contact = json.loads(text)
        assert contact["email"] == f"user{i}@example.com"
        for key, value in (("first_name", NASTY[i]), ("cf:note", NASTY[rows - 1 - i])):
            expected = value.strip()
            assert contact.get(key) == expected, (i, key)
    # Control characters are escaped, never sent raw.
    assert all(not any(ord(ch) < 0x20 for ch in text) for text in encoded)


def test_absent_values_are_omitted_not_sent_empty() -> None:
    plan = _plan(first_name="F", last_name="L", birthday_month="M")
    batch = pa.record_batch(
        {
            "E": ["a@example.com", "b@example.com", "c@example.com"],
            "F": [None, "", "Bea"],
            "L": ["   ", None, "Smith"],
            "M": [None, None, 12],
        }
    )
    contacts = [json.loads(text) for text in contact_json(batch, plan, {}).to_pylist()]
    assert contacts == [
        {"email": "a@example.com"},
        {"email": "b@example.com"},
        {"email": "c@example.com", "first_name": "Bea", "last_name": "Smith", "birthday_month": 12},
    ]


def test_text_fields_truncate_and_count() -> None:
    plan = _plan(first_name="F", **{"cf:tier": "T"})
    long_name = "N" * 49 + "é" + "tail"  # 54 characters, the 50th is multi-byte
    batch = pa.record_batch(
        {"E": ["a@example.com", "b@example.com"], "F": [long_name, "x"], "T": ["t" * 300, "ok"]}
    )
    truncated: dict[str, int] = {}
    contacts = [json.loads(text) for text in contact_json(batch, plan, truncated).to_pylist()]
    assert contacts[0]["first_name"] == long_name[:50]
    assert contacts[0]["cf:tier"] == "t" * 255
    assert contacts[1] == {"email": "b@example.com", "first_name": "x", "cf:tier": "ok"}
    assert truncated == {"first_name": 1, "cf:tier": 1}


def test_strict_and_int_fields_reject_rows() -> None:
    plan = _plan(phone="P", birthday_day="D", zip="Z")
    batch = pa.record_batch(
        {
            "E": ["a@example.com", "b@example.com", "c@example.com", "bad", "e@example.com", "f@example.com"],
            "P": ["+1 555 0100", "9" * 51, "9" * 51, "9" * 51, None, None],
            "D": ["07", "1", "32", "x", "zero", None],
            "Z": ["12345", None, None, None, None, "1" * 51],
        }
    )
    codes, _ = cc.classify(batch, plan)
    reasons = [plan.reasons[code] for code in codes.to_pylist()]
    assert reasons == [
        "",
        "phone_too_long",
        "phone_too_long",
        "invalid_email",
        "birthday_day_invalid",
        "zip_too_long",
    ]
    ok = batch.filter(pc.equal(codes, fields.OK))
    assert json.loads(contact_json(ok, plan, {})[0].as_py()) == {
        "email": "a@example.com",
        "phone": "+1 555 0100",
        "birthday_day": 7,
        "zip": "12345",
    }


def test_non_string_columns_are_cast() -> None:
    plan = _plan(zip="Z", first_name="F", birthday_month="M")
    batch = pa.record_batch(
        {
            "E": pa.array(["a@example.com"]).dictionary_encode(),
            "Z": pa.array([90210], pa.int64()),
            "F": pa.array(["Ann"], pa.large_string()),
            "M": pa.array([3], pa.int8()),
        }
    )
    contact = json.loads(contact_json(batch, plan, {})[0].as_py())
    assert contact == {"email": "a@example.com", "zip": "90210", "first_name": "Ann", "birthday_month": 3}


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"first_name": "F"}, "must map 'email'"),
        ({"email": "E", "nickname": "N"}, "unknown Constant Contact fields: 'nickname'"),
        ({"email": "E", "cf:": "X"}, "unknown Constant Contact fields"),
        ({"email": "E", **{f"cf:f{i}": f"C{i}" for i in range(26)}}, "26 custom fields"),
        ({"email": ""}, "must be a column name"),
        ({}, "non-empty dict"),
    ],
)
def test_field_mapping_validation(mapping: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fields.validate_field_mapping(mapping)


def test_deduplicator_keeps_first_occurrence_across_batches() -> None:
    rng = random.Random(7)
    emails = [f"user{rng.randrange(3000)}@example.com" for _ in range(10_000)]
    dedup = EmailDeduplicator(partitions=8)
    for start in range(0, len(emails), 1234):
        chunk = emails[start : start + 1234]
        dedup.add(email_hashes(pa.array(chunk)), pa.array(range(start, start + len(chunk)), pa.uint32()))
    mask, duplicates = dedup.duplicate_mask(len(emails))
    seen: set[str] = set()
    expected = []
    for email in emails:
        expected.append(1 if email in seen else 0)
        seen.add(email)
    assert mask.to_pylist() == expected
    assert duplicates == len(emails) - len(seen)


def test_mask_email_hides_the_address() -> None:
    assert cc.mask_email("jane.doe@example.com") == "j***@e***.com"
    assert cc.mask_email("not-an-email") == "n***"
    assert "doe" not in cc.mask_email("jane.doe@doe.org")
