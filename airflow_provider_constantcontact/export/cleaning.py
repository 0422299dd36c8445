"""Vectorised cleaning and validation of contact values (pyarrow.compute): batches in, arrays out.

Every mapped column is first turned into text the way :func:`as_text` documents (one rule per
Arrow type, see docs/export-operator.md "What is sent for each type"). Missing values, which
are never sent, are null, empty or all-whitespace text, float NaN and infinities: an import
overwrites every property it includes, so a missing value must be left out, not sent as ``""``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from airflow_provider_constantcontact.constants import EMAIL_MAX_LENGTH
from airflow_provider_constantcontact.export.fields import (
    EMAIL_TOO_LONG,
    INVALID_EMAIL,
    MISSING_EMAIL,
    OK,
    ContactPlan,
    FieldSpec,
)

# RE2 syntax. ASCII only: a local part of atoms separated by single dots, then a domain of
# labels (letters, digits, inner hyphens) ending in a top-level domain that starts with a letter.
# None of these characters needs escaping in JSON, so an email is emitted as is.
_ATOM = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
EMAIL_PATTERN = rf"^{_ATOM}(?:\.{_ATOM})*@(?:{_LABEL}\.)+[a-z](?:[a-z0-9-]*[a-z0-9])$"


def is_supported_type(data_type: pa.DataType) -> bool:
    """Whether :func:`as_text` can send values of this type (nested types cannot be sent)."""
    if pa.types.is_dictionary(data_type):
        return is_supported_type(data_type.value_type)
    return not (
        pa.types.is_nested(data_type)
        or pa.types.is_interval(data_type)
        or pa.types.is_duration(data_type)
        or pa.types.is_fixed_size_binary(data_type)
    )


def is_text_type(data_type: pa.DataType) -> bool:
    """Whether values of this type are text (or bytes holding text): what an email column needs."""
    if pa.types.is_dictionary(data_type):
        return is_text_type(data_type.value_type)
    return (
        pa.types.is_string(data_type)
        or pa.types.is_large_string(data_type)
        or pa.types.is_binary(data_type)
        or pa.types.is_large_binary(data_type)
        or pa.types.is_null(data_type)
        or data_type in (pa.string_view(), pa.binary_view())
    )


@dataclass
class Text:
    """A column as UTF-8 text, and which values were not valid UTF-8 (None when all were)."""

    values: pa.Array
    bad_utf8: pa.Array | None = None


def _utf8(values: pa.Array, validate: bool) -> Text:
    """Bytes (string or binary, regular or large) as ``string``; values not valid UTF-8 become null."""
    raw = values.view(pa.large_binary()) if _is_large(values.type) else values.view(pa.binary())
    if not validate and not _is_large(values.type):
        return Text(raw.view(pa.string()))
    try:
        return Text(raw.cast(pa.string()))
    except pa.ArrowInvalid:
        pass
    # Rare error path: find the bad values one by one.
    mask = pa.array([value is not None and not _decodes(value) for value in raw.to_pylist()], pa.bool_())
    cleaned = pc.if_else(mask, pa.scalar(None, raw.type), raw)
    return Text(cleaned.cast(pa.string()), mask)


def _decodes(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _is_large(data_type: pa.DataType) -> bool:
    return bool(pa.types.is_large_string(data_type) or pa.types.is_large_binary(data_type))


def _timestamp_text(values: pa.Array) -> pa.Array:
    """ISO 8601: ``2024-01-02T03:04:05``, a fraction only on values that have one; zoned in UTC + Z.

    Decided per value, so a value's text never depends on the other rows of its batch.
    """
    unit, tz = values.type.unit, values.type.tz
    seconds = pc.cast(values, pa.timestamp("s", tz), safe=False)
    whole = pc.fill_null(pc.equal(pc.cast(seconds, values.type), values), True)
    if tz is not None:
        values = pc.cast(values, pa.timestamp(unit, "UTC"))
        seconds = pc.cast(seconds, pa.timestamp("s", "UTC"))
    text = pc.strftime(seconds, format="%Y-%m-%dT%H:%M:%S")
    if not pc.all(whole).as_py():
        text = pc.if_else(whole, text, pc.strftime(values, format="%Y-%m-%dT%H:%M:%S"))
    return pc.binary_join_element_wise(text, "Z", "") if tz is not None else text


def _float_text(values: pa.Array) -> pa.Array:
    """NaN and infinities are missing; whole numbers without ``.0`` (a zip or phone kept as float)."""
    finite = pc.fill_null(pc.is_finite(values), False)
    values = pc.if_else(finite, values, pa.scalar(None, values.type))
    whole = pc.and_(pc.equal(pc.floor(values), values), pc.less(pc.abs(values), 2.0**53))
    whole = pc.fill_null(whole, False)
    as_int = pc.cast(pc.if_else(whole, values, pa.scalar(0.0, values.type)), pa.int64())
    return pc.if_else(whole, pc.cast(as_int, pa.string()), pc.cast(values, pa.string()))


def as_text(values: pa.Array, validate: bool = True) -> Text:
    """Any supported column as ``string``; nulls stay null.

    Strings and binaries are checked for valid UTF-8 (bad values become null and are flagged);
    dictionaries are decoded; floats lose NaN/infinities and a whole number's ``.0``; timestamps
    are ISO 8601 (UTC ``Z`` when zoned); dates ``YYYY-MM-DD``; booleans ``true``/``false``;
    integers, decimals and times in Arrow's text form. ``validate=False`` skips the UTF-8
    check, for rows pass one already checked (pass two encodes only those).
    """
    data_type = values.type
    if pa.types.is_dictionary(data_type):
        return as_text(values.dictionary_decode(), validate)
    if data_type in (pa.string_view(), pa.binary_view()):
        return as_text(values.cast(pa.large_binary()), validate)
    if pa.types.is_string(data_type) or pa.types.is_large_string(data_type):
        return _utf8(values, validate)
    if pa.types.is_binary(data_type) or pa.types.is_large_binary(data_type):
        return _utf8(values, validate)
    if pa.types.is_null(data_type):
        return Text(pa.nulls(len(values), pa.string()))
    if pa.types.is_floating(data_type):
        return Text(_float_text(values if data_type != pa.float16() else values.cast(pa.float32())))
    if pa.types.is_timestamp(data_type):
        return Text(_timestamp_text(values))
    return Text(pc.cast(values, pa.string()))


def _all_ascii(values: pa.Array) -> bool:
    return bool(pc.all(pc.string_is_ascii(values)).as_py() in (True, None))


def _trim(values: pa.Array, ascii_only: bool) -> pa.Array:
    return pc.ascii_trim_whitespace(values) if ascii_only else pc.utf8_trim_whitespace(values)


def _null_if_empty(values: pa.Array) -> pa.Array:
    """Empty strings become nulls (omitted from the contact)."""
    empty = pc.equal(pc.binary_length(values), 0)
    if not pc.any(empty).as_py():
        return values
    return pc.if_else(empty, pa.scalar(None, values.type), values)


def _char_length(values: pa.Array, ascii_only: bool) -> pa.Array:
    return pc.binary_length(values) if ascii_only else pc.utf8_length(values)


def normalize_emails(values: pa.Array, validate: bool = True) -> pa.Array:
    """Trim and lower-case ASCII letters of emails; empty ones become null.

    Only ASCII is folded: a non-ASCII letter whose lower case is ASCII (the Kelvin sign
    U+212A becomes ``k``) would otherwise turn an invalid address into someone else's. Such
    an address keeps its non-ASCII character and fails validation.
    """
    text = as_text(values, validate)
    values = text.values
    if text.bad_utf8 is not None:  # not valid UTF-8: kept as a character that fails validation
        values = pc.if_else(text.bad_utf8, pa.scalar("\ufffd", values.type), values)
    values = _trim(values, _all_ascii(values))
    return _null_if_empty(pc.ascii_lower(values))


def email_codes(emails: pa.Array) -> pa.Array:
    """Reason code per normalised email: OK, MISSING_EMAIL, INVALID_EMAIL or EMAIL_TOO_LONG."""
    missing = pc.is_null(emails)
    valid_syntax = pc.fill_null(pc.match_substring_regex(emails, EMAIL_PATTERN), False)
    too_long = pc.fill_null(pc.greater(pc.utf8_length(emails), EMAIL_MAX_LENGTH), False)
    codes = pc.if_else(too_long, pa.scalar(EMAIL_TOO_LONG, pa.int8()), pa.scalar(OK, pa.int8()))
    codes = pc.if_else(valid_syntax, codes, pa.scalar(INVALID_EMAIL, pa.int8()))
    return pc.if_else(missing, pa.scalar(MISSING_EMAIL, pa.int8()), codes)


@dataclass
class CleanField:
    """One field's cleaned values (null = omit), the rows it rejects, and how many it truncated.

    ``bad`` flags values over a strict limit or not a valid integer; ``bad_utf8`` values that
    are not valid UTF-8 (each None when no row is affected).
    """

    values: pa.Array
    bad: pa.Array | None = None
    truncated: int = 0
    bad_utf8: pa.Array | None = None


def clean_field(values: pa.Array, spec: FieldSpec, validate: bool = True) -> CleanField:
    """Trim, blank-to-null, then truncate (``text``), flag (``strict``/``int``) over-limit values.

    For ``int`` fields the values come back as decimal strings of in-range integers.
    ``validate=False`` skips the UTF-8 check (see :func:`as_text`).
    """
    if spec.kind == "int":
        return _clean_int(values, spec, validate)
    text = as_text(values, validate)
    values = text.values
    ascii_only = _all_ascii(values)
    values = _null_if_empty(_trim(values, ascii_only))
    over = pc.fill_null(pc.greater(_char_length(values, ascii_only), spec.limit), False)
    count = pc.sum(over).as_py() or 0
    if spec.kind == "strict":
        return CleanField(values, over if count else None, bad_utf8=text.bad_utf8)
    if count:
        values = pc.if_else(over, pc.utf8_slice_codeunits(values, 0, spec.limit), values)
        # Truncation can leave trailing whitespace, or nothing but whitespace.
        values = _null_if_empty(_trim(values, ascii_only))
    return CleanField(values, None, count, text.bad_utf8)


def _clean_int(values: pa.Array, spec: FieldSpec, validate: bool) -> CleanField:
    low, high = spec.int_range or (None, None)
    bad_utf8 = None
    if pa.types.is_integer(values.type):
        numbers = pc.cast(values, pa.int64())
        present = pc.is_valid(numbers)
        text = pc.cast(numbers, pa.string())
    else:
        converted = as_text(values, validate)
        bad_utf8 = converted.bad_utf8
        text = _null_if_empty(pc.utf8_trim_whitespace(converted.values))
        present = pc.is_valid(text)
        digits = pc.fill_null(pc.match_substring_regex(text, r"^[0-9]{1,9}$"), False)
        text = pc.if_else(digits, text, pa.scalar(None, pa.string()))
        numbers = pc.cast(text, pa.int64())
        text = pc.cast(numbers, pa.string())  # drops leading zeros: "07" -> "7"
    in_range = pc.fill_null(pc.and_(pc.greater_equal(numbers, low), pc.less_equal(numbers, high)), False)
    bad = pc.and_(present, pc.invert(in_range))
    has_bad = bool(pc.any(bad).as_py())
    cleaned = pc.if_else(in_range, text, pa.scalar(None, pa.string()))
    return CleanField(cleaned, bad if has_bad else None, bad_utf8=bad_utf8)


def classify(batch: pa.RecordBatch, plan: ContactPlan) -> tuple[pa.Array, pa.Array]:
    """Pass one: the reason code (int8) of every row, and the normalised emails.

    Email problems win over field problems; among fields, mapping order decides. A field value
    that is not valid UTF-8 rejects its row (``<field>_invalid_utf8``): it cannot go into JSON.
    """
    emails = normalize_emails(batch.column(plan.email_column))
    codes = email_codes(emails)
    for spec in plan.specs[1:]:
        column = batch.column(plan.field_mapping[spec.name])
        if spec.kind == "text":  # free text never rejects a row for its length, only its encoding
            cleaned = CleanField(column, bad_utf8=as_text(column).bad_utf8)
        else:
            cleaned = clean_field(column, spec)
        for reason, flagged in ((spec.encoding_reason, cleaned.bad_utf8), (spec.reject_reason, cleaned.bad)):
            if flagged is not None and reason is not None:  # only strict and int fields flag `bad`
                codes = pc.if_else(pc.and_(pc.equal(codes, OK), flagged), plan.code(reason), codes)
    return codes, emails


def mask_email(email: str) -> str:
    """``jane.doe@example.com`` -> ``j***@e***.com``: enough to recognise a shape, not a person."""
    local, _, domain = email.partition("@")
    name, dot, tld = domain.rpartition(".")
    masked_domain = f"{name[:1]}***{dot}{tld}" if dot else f"{domain[:1]}***"
    return f"{local[:1]}***@{masked_domain}" if domain else f"{local[:1]}***"


def count_codes(codes: pa.Array, reasons: Sequence[str]) -> dict[str, int]:
    """How many rows have each reason code (zero counts left out)."""
    counts = pc.value_counts(codes)
    return {
        reasons[code]: count
        for code, count in zip(
            counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True
        )
        if count
    }


def merge_counts(total: dict[str, int], more: Iterable[tuple[str, int]]) -> None:
    """Add ``more`` (name, count) pairs into ``total``."""
    for name, count in more:
        total[name] = total.get(name, 0) + count
