"""Vectorised cleaning, validation, de-duplication and JSON encoding of contacts (pyarrow.compute).

Nothing here turns a row into a Python object: a record batch goes in, Arrow arrays come out.
The one exception is de-duplication, which hashes each valid email with Python's ``hash()`` (a
short-lived ``str`` per row of one batch) and keeps only the 8-byte hashes, so memory stays flat.

Field kinds (``FieldSpec.kind``):

* ``email``: trimmed, lower-cased; null/empty -> ``missing_email``, bad syntax -> ``invalid_email``,
  more than 50 characters -> ``email_too_long`` (the row is rejected).
* ``text`` (names, job title, company, street, city, state, country, custom fields): trimmed;
  over the limit -> truncated to the limit and counted; shortening free text loses little.
* ``strict`` (phones, zip codes, anniversary): trimmed; over the limit -> the row is rejected with
  ``<field>_too_long``, because a truncated phone number or zip code is wrong data.
* ``int`` (birthday month/day): an integer or a string of digits in range, sent as a JSON number;
  anything else -> the row is rejected with ``<field>_invalid``.

A null, empty or all-whitespace value is omitted from that contact (never sent as ``null`` or
``""``), because an import overwrites every property it includes.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc

EMAIL_FIELD = "email"
EMAIL_MAX_LENGTH = 50
SHORT_LIMIT = 50
LONG_LIMIT = 255
CUSTOM_FIELD_PREFIX = "cf:"
MAX_CUSTOM_FIELDS = 25

# RE2 syntax. ASCII only: a local part of atoms separated by single dots, then a domain of
# labels (letters, digits, inner hyphens) ending in a top-level domain that starts with a letter.
# None of these characters needs escaping in JSON, so an email is emitted as is.
_ATOM = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
EMAIL_PATTERN = rf"^{_ATOM}(?:\.{_ATOM})*@(?:{_LABEL}\.)+[a-z](?:[a-z0-9-]*[a-z0-9])$"

Kind = Literal["email", "text", "strict", "int"]


@dataclass(frozen=True)
class FieldSpec:
    """How one Constant Contact import property is cleaned and limited."""

    name: str
    kind: Kind
    limit: int | None = None
    int_range: tuple[int, int] | None = None

    @property
    def reject_reason(self) -> str | None:
        """The reject reason a bad value of this field gives, or None when it never rejects."""
        if self.kind == "strict":
            return f"{self.name}_too_long"
        if self.kind == "int":
            return f"{self.name}_invalid"
        return None


def _specs() -> dict[str, FieldSpec]:
    specs = {EMAIL_FIELD: FieldSpec(EMAIL_FIELD, "email", EMAIL_MAX_LENGTH)}
    for name in ("first_name", "last_name", "job_title", "company_name"):
        specs[name] = FieldSpec(name, "text", SHORT_LIMIT)
    for name in ("phone", "home_phone", "work_phone", "mobile_phone", "other_phone", "fax", "sms_number"):
        specs[name] = FieldSpec(name, "strict", SHORT_LIMIT)
    specs["anniversary"] = FieldSpec("anniversary", "strict", SHORT_LIMIT)
    for prefix in ("", "home_", "work_", "other_"):
        for name in ("city", "state", "country"):
            specs[prefix + name] = FieldSpec(prefix + name, "text", SHORT_LIMIT)
        specs[prefix + "zip"] = FieldSpec(prefix + "zip", "strict", SHORT_LIMIT)
        for name in ("street", "street2"):
            specs[prefix + name] = FieldSpec(prefix + name, "text", LONG_LIMIT)
    specs["birthday_month"] = FieldSpec("birthday_month", "int", int_range=(1, 12))
    specs["birthday_day"] = FieldSpec("birthday_day", "int", int_range=(1, 31))
    return specs


#: Standard import properties (besides ``cf:<name>`` custom fields).
IMPORT_FIELDS: dict[str, FieldSpec] = _specs()

# Reason codes carried per row between the two passes (int8). Field reasons follow.
OK, DUPLICATE, MISSING_EMAIL, INVALID_EMAIL, EMAIL_TOO_LONG = range(5)
BASE_REASONS = ("", "duplicate", "missing_email", "invalid_email", "email_too_long")


def field_spec(name: str) -> FieldSpec:
    """The spec of a mapped property; ``cf:<name>`` is free text of at most 255 characters."""
    if name.startswith(CUSTOM_FIELD_PREFIX) and len(name) > len(CUSTOM_FIELD_PREFIX):
        return FieldSpec(name, "text", LONG_LIMIT)
    try:
        return IMPORT_FIELDS[name]
    except KeyError:
        raise ValueError(f"unknown field {name!r}") from None


def validate_field_mapping(field_mapping: Mapping[str, str]) -> None:
    """Check the mapping's keys: ``email`` required, known import fields or ``cf:<name>``, <= 25 custom."""
    if not isinstance(field_mapping, Mapping) or not field_mapping:
        raise ValueError("field_mapping must be a non-empty dict of Constant Contact field -> column")
    if EMAIL_FIELD not in field_mapping:
        raise ValueError("field_mapping must map 'email' to the column holding the email address")
    unknown = []
    for name, column in field_mapping.items():
        if not isinstance(column, str) or not column:
            raise ValueError(f"field_mapping[{name!r}] must be a column name, got {column!r}")
        try:
            field_spec(name)
        except ValueError:
            unknown.append(name)
    if unknown:
        raise ValueError(
            f"field_mapping has unknown Constant Contact fields: {', '.join(map(repr, unknown))}; "
            f"use standard import fields ({', '.join(IMPORT_FIELDS)}) or 'cf:<custom field name>'"
        )
    custom = [name for name in field_mapping if name.startswith(CUSTOM_FIELD_PREFIX)]
    if len(custom) > MAX_CUSTOM_FIELDS:
        raise ValueError(
            f"field_mapping has {len(custom)} custom fields; Constant Contact allows {MAX_CUSTOM_FIELDS}"
        )


@dataclass
class ContactPlan:
    """The compiled field mapping: which columns to read, how to clean them, which reasons exist."""

    field_mapping: dict[str, str]
    specs: list[FieldSpec] = field(init=False)
    reasons: list[str] = field(init=False)

    def __post_init__(self) -> None:
        validate_field_mapping(self.field_mapping)
        self.field_mapping = {EMAIL_FIELD: self.field_mapping[EMAIL_FIELD], **self.field_mapping}
        self.specs = [field_spec(name) for name in self.field_mapping]
        self.reasons = list(BASE_REASONS)
        for spec in self.specs:
            if spec.reject_reason:
                self.reasons.append(spec.reject_reason)
        self._constants: dict[str, pa.Array] = {}

    @property
    def email_column(self) -> str:
        return self.field_mapping[EMAIL_FIELD]

    @property
    def columns(self) -> list[str]:
        """The distinct mapped columns, in mapping order."""
        return list(dict.fromkeys(self.field_mapping.values()))

    @property
    def check_columns(self) -> list[str]:
        """Columns pass one needs: the email and every field that can reject a row."""
        names = [self.email_column]
        names += [self.field_mapping[s.name] for s in self.specs if s.reject_reason]
        return list(dict.fromkeys(names))

    @property
    def custom_fields(self) -> list[str]:
        """Custom field names (without ``cf:``) the mapping uses."""
        return [
            s.name[len(CUSTOM_FIELD_PREFIX) :] for s in self.specs if s.name.startswith(CUSTOM_FIELD_PREFIX)
        ]

    def constant(self, text: str, length: int) -> pa.Array:
        """``text`` repeated ``length`` times (cached: a zero-copy slice of a longer array).

        Arrow's element-wise join is much faster on arrays than on a broadcast scalar.
        """
        cached = self._constants.get(text)
        if cached is None or len(cached) < length:
            cached = pa.repeat(pa.scalar(text, pa.string()), max(length, 1 << 16))
            self._constants[text] = cached
        return cached.slice(0, length)


def _as_string(values: pa.Array) -> pa.Array:
    """Any column as ``string`` (dictionary-decoded; numbers, dates ... in Arrow's text form)."""
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if pa.types.is_string(values.type):
        return values
    return pc.cast(values, pa.string())


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


def normalize_emails(values: pa.Array) -> pa.Array:
    """Trim and lower-case emails; empty ones become null."""
    values = _as_string(values)
    if _all_ascii(values):
        values = pc.ascii_lower(pc.ascii_trim_whitespace(values))
    else:
        values = pc.utf8_lower(pc.utf8_trim_whitespace(values))
    return _null_if_empty(values)


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
    """One field's cleaned values (null = omit), the rows it rejects, and how many it truncated."""

    values: pa.Array
    bad: pa.Array | None = None
    truncated: int = 0


def clean_field(values: pa.Array, spec: FieldSpec) -> CleanField:
    """Trim, blank-to-null, then truncate (``text``), flag (``strict``/``int``) over-limit values.

    For ``int`` fields the values come back as decimal strings of in-range integers.
    """
    if spec.kind == "int":
        return _clean_int(values, spec)
    values = _as_string(values)
    ascii_only = _all_ascii(values)
    values = _null_if_empty(_trim(values, ascii_only))
    over = pc.fill_null(pc.greater(_char_length(values, ascii_only), spec.limit), False)
    count = pc.sum(over).as_py() or 0
    if spec.kind == "strict":
        return CleanField(values, over if count else None)
    if count:
        values = pc.if_else(over, pc.utf8_slice_codeunits(values, 0, spec.limit), values)
        # Truncation can leave trailing whitespace, or nothing but whitespace.
        values = _null_if_empty(_trim(values, ascii_only))
    return CleanField(values, None, count)


def _clean_int(values: pa.Array, spec: FieldSpec) -> CleanField:
    low, high = spec.int_range or (None, None)
    if pa.types.is_integer(values.type):
        numbers = pc.cast(values, pa.int64())
        present = pc.is_valid(numbers)
        text = pc.cast(numbers, pa.string())
    else:
        text = _null_if_empty(pc.utf8_trim_whitespace(_as_string(values)))
        present = pc.is_valid(text)
        digits = pc.fill_null(pc.match_substring_regex(text, r"^[0-9]{1,9}$"), False)
        text = pc.if_else(digits, text, pa.scalar(None, pa.string()))
        numbers = pc.cast(text, pa.int64())
        text = pc.cast(numbers, pa.string())  # drops leading zeros: "07" -> "7"
    in_range = pc.fill_null(pc.and_(pc.greater_equal(numbers, low), pc.less_equal(numbers, high)), False)
    bad = pc.and_(present, pc.invert(in_range))
    has_bad = bool(pc.any(bad).as_py())
    return CleanField(pc.if_else(in_range, text, pa.scalar(None, pa.string())), bad if has_bad else None)


_END = 2**31 - 1  # a slice position past the end of any value
_CONTROL_ESCAPES = {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}


def _whole_data(values: pa.Array) -> pa.Array | None:
    """The bytes of every value of a ``string`` array as one binary value (zero-copy), or None.

    Scanning that once is much cheaper than scanning each short value on its own.
    """
    offsets, data = values.buffers()[1], values.buffers()[2]
    if data is None or not len(values):
        return None
    first, last = (
        struct.unpack_from("<ii", offsets, values.offset * 4)[0],
        struct.unpack_from("<i", offsets, (values.offset + len(values)) * 4)[0],
    )
    bounds = pa.py_buffer(struct.pack("<ii", first, last))
    return pa.Array.from_buffers(pa.binary(), 1, [None, bounds, data])


_SPECIAL = r'["\\\x00-\x1f]'


def json_escape(values: pa.Array) -> pa.Array:
    """Escape ``\\``, ``"`` and control characters (U+0000-U+001F) for a JSON string body.

    Other characters, including non-ASCII ones, go out as UTF-8 as JSON allows. A batch with
    nothing to escape (the common case) costs one regex scan over its bytes.
    """
    whole = _whole_data(values)
    if whole is None or not pc.match_substring_regex(whole, _SPECIAL)[0].as_py():
        return values
    if pc.any(pc.match_substring(values, "\\")).as_py():
        values = pc.replace_substring(values, "\\", "\\\\")
    if pc.any(pc.match_substring(values, '"')).as_py():
        values = pc.replace_substring(values, '"', '\\"')
    for code in range(0x20):
        char = chr(code)
        if pc.any(pc.match_substring(values, char)).as_py():
            values = pc.replace_substring(values, char, _CONTROL_ESCAPES.get(code, f"\\u{code:04x}"))
    return values


def classify(batch: pa.RecordBatch, plan: ContactPlan) -> tuple[pa.Array, pa.Array]:
    """Pass one: the reason code (int8) of every row, and the normalised emails.

    Email problems win over field problems; among fields, mapping order decides.
    """
    emails = normalize_emails(batch.column(plan.email_column))
    codes = email_codes(emails)
    for spec in plan.specs:
        if not spec.reject_reason:
            continue
        cleaned = clean_field(batch.column(plan.field_mapping[spec.name]), spec)
        if cleaned.bad is not None:
            code = pa.scalar(plan.reasons.index(spec.reject_reason), pa.int8())
            codes = pc.if_else(pc.and_(pc.equal(codes, OK), cleaned.bad), code, codes)
    return codes, emails


def contact_json(batch: pa.RecordBatch, plan: ContactPlan, truncated: dict[str, int]) -> pa.Array:
    """Pass two: one JSON object per row (all rows must be valid), as a string array.

    ``{"email":"...","first_name":"...","cf:tier":"..."}`` with absent values omitted;
    ``truncated`` is increased by the number of values each ``text`` field had to shorten.
    """
    parts = [_wrap(normalize_emails(batch.column(plan.email_column)), '{"email":"', '"')]
    for spec in plan.specs[1:]:
        cleaned = clean_field(batch.column(plan.field_mapping[spec.name]), spec)
        if cleaned.truncated:
            truncated[spec.name] = truncated.get(spec.name, 0) + cleaned.truncated
        key = "," + json.dumps(spec.name, ensure_ascii=False) + ":"
        if spec.kind == "int":
            fragment = _wrap(cleaned.values, key, "")
        else:
            fragment = _wrap(json_escape(cleaned.values), key + '"', '"')
        # Null where the value is absent: the whole property is left out of that contact.
        parts.append(pc.fill_null(fragment, ""))
    parts.append(plan.constant("}", batch.num_rows))
    return pc.binary_join_element_wise(*parts, "")


def _wrap(values: pa.Array, before: str, after: str) -> pa.Array:
    """``before + value + after`` per row (null stays null); slicing kernels beat joins here."""
    if after:
        values = pc.binary_replace_slice(values, start=_END, stop=_END, replacement=after)
    return pc.binary_replace_slice(values, start=0, stop=0, replacement=before)


class EmailDeduplicator:
    """Exact-first-occurrence de-duplication by email across batches, in bounded memory.

    Each valid email is reduced to Python's 64-bit string hash (SipHash, randomised per process)
    and kept with its row number and a bucket number (13 bytes a row, no Python objects). At the
    end each of ``partitions`` buckets is stable-sorted by hash: a row whose hash equals the
    previous one's is a later occurrence. Working one bucket at a time bounds the transient
    memory. Two different emails with equal hashes would count as duplicates: with n valid
    emails the chance that this happens at all is about n**2 / 2**65 (3e-8 for 1 million,
    7e-7 for 5 million rows).
    """

    def __init__(self, partitions: int = 16) -> None:
        self.partitions = partitions
        self._chunks: list[tuple[pa.Array, pa.Array, pa.Array]] = []

    def add(self, emails: pa.Array, rows: pa.Array) -> None:
        """Record valid (non-null) normalised ``emails`` found at global row numbers ``rows``."""
        if not len(emails):
            return
        hashes = pa.array(map(hash, emails.to_pylist()), type=pa.int64())
        bucket = pc.cast(pc.bit_wise_and(hashes, self.partitions - 1), pa.uint8())
        self._chunks.append((hashes, rows, bucket))

    def duplicate_mask(self, total_rows: int) -> tuple[pa.Array, int]:
        """A uint8 array over all rows (1 = later occurrence of an earlier email) and the count."""
        mask = bytearray(total_rows)
        duplicates = 0
        chunks, self._chunks = self._chunks, []
        for index in range(self.partitions if chunks else 0):
            hashes, rows = [], []
            for chunk_hashes, chunk_rows, bucket in chunks:
                mine = pc.equal(bucket, pa.scalar(index, pa.uint8()))
                hashes.append(chunk_hashes.filter(mine))
                rows.append(chunk_rows.filter(mine))
            all_hashes = pa.concat_arrays(hashes)
            if len(all_hashes) < 2:
                continue
            order = pc.sort_indices(all_hashes)  # stable: equal hashes stay in row order
            sorted_hashes = all_hashes.take(order)
            later = pc.equal(sorted_hashes.slice(1), sorted_hashes.slice(0, len(sorted_hashes) - 1))
            repeated = pa.concat_arrays(rows).take(order).slice(1).filter(later)
            for row in repeated.to_pylist():
                mask[row] = 1
            duplicates += len(repeated)
        return pa.Array.from_buffers(pa.uint8(), total_rows, [None, pa.py_buffer(mask)]), duplicates


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
