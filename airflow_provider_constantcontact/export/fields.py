"""The import properties an export can map, how each is limited, and the compiled field mapping.

Field kinds (``FieldSpec.kind``):

* ``email``: trimmed, ASCII lower-cased; null/empty -> ``missing_email``, bad syntax ->
  ``invalid_email``, more than 50 characters -> ``email_too_long`` (the row is rejected).
* ``text`` (names, job title, company, street, city, state, country, custom fields): trimmed;
  over the limit -> truncated to the limit and counted; shortening free text loses little.
* ``strict`` (phones, zip codes, anniversary): trimmed; over the limit -> the row is rejected with
  ``<field>_too_long``, because a truncated phone number or zip code is wrong data.
* ``int`` (birthday month/day): an integer or a string of digits in range, sent as a JSON number;
  anything else -> the row is rejected with ``<field>_invalid``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa

from airflow_provider_constantcontact.constants import (
    CUSTOM_FIELD_PREFIX,
    EMAIL_MAX_LENGTH,
    LONG_FIELD_MAX_LENGTH,
    MAX_CUSTOM_FIELDS_PER_CONTACT,
    SHORT_FIELD_MAX_LENGTH,
)

EMAIL_FIELD = "email"

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

    @property
    def encoding_reason(self) -> str:
        """The reject reason of a value that is not valid UTF-8 (it cannot go into JSON)."""
        return f"{self.name}_invalid_utf8"


def _specs() -> dict[str, FieldSpec]:
    short, long = SHORT_FIELD_MAX_LENGTH, LONG_FIELD_MAX_LENGTH
    specs = {EMAIL_FIELD: FieldSpec(EMAIL_FIELD, "email", EMAIL_MAX_LENGTH)}
    for name in ("first_name", "last_name", "job_title", "company_name"):
        specs[name] = FieldSpec(name, "text", short)
    for name in ("phone", "home_phone", "work_phone", "mobile_phone", "other_phone", "fax", "sms_number"):
        specs[name] = FieldSpec(name, "strict", short)
    specs["anniversary"] = FieldSpec("anniversary", "strict", short)
    for prefix in ("", "home_", "work_", "other_"):
        for name in ("city", "state", "country"):
            specs[prefix + name] = FieldSpec(prefix + name, "text", short)
        specs[prefix + "zip"] = FieldSpec(prefix + "zip", "strict", short)
        for name in ("street", "street2"):
            specs[prefix + name] = FieldSpec(prefix + name, "text", long)
    specs["birthday_month"] = FieldSpec("birthday_month", "int", int_range=(1, 12))
    specs["birthday_day"] = FieldSpec("birthday_day", "int", int_range=(1, 31))
    return specs


#: Standard import properties (besides ``cf:<name>`` custom fields).
IMPORT_FIELDS: dict[str, FieldSpec] = _specs()

# Reason codes carried per row between the two passes (int8). Field reasons follow.
OK, DUPLICATE, MISSING_EMAIL, INVALID_EMAIL, EMAIL_TOO_LONG, LEFT_LIST, UNSUBSCRIBED = range(7)
#: ``left_list`` / ``unsubscribed``: with export state, a contact kept out of every list it would
#: go to because it left that list, or unsubscribed, outside the export (docs/export-state.md).
BASE_REASONS = (
    "",
    "duplicate",
    "missing_email",
    "invalid_email",
    "email_too_long",
    "left_list",
    "unsubscribed",
)


def field_spec(name: str) -> FieldSpec:
    """The spec of a mapped property; ``cf:<name>`` is free text of at most 255 characters."""
    if name.startswith(CUSTOM_FIELD_PREFIX) and len(name) > len(CUSTOM_FIELD_PREFIX):
        return FieldSpec(name, "text", LONG_FIELD_MAX_LENGTH)
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
    if len(custom) > MAX_CUSTOM_FIELDS_PER_CONTACT:
        raise ValueError(
            f"field_mapping has {len(custom)} custom fields; Constant Contact allows "
            f"{MAX_CUSTOM_FIELDS_PER_CONTACT}"
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
            for reason in (spec.reject_reason, spec.encoding_reason if spec.kind != "email" else None):
                if reason:
                    self.reasons.append(reason)
        self._constants: dict[str, pa.Array] = {}

    def code(self, reason: str) -> pa.Scalar:
        """The int8 reason code of ``reason``."""
        return pa.scalar(self.reasons.index(reason), pa.int8())

    @property
    def email_column(self) -> str:
        return self.field_mapping[EMAIL_FIELD]

    @property
    def columns(self) -> list[str]:
        """The distinct mapped columns, in mapping order."""
        return list(dict.fromkeys(self.field_mapping.values()))

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
