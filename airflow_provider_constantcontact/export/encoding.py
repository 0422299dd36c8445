"""JSON encoding of valid contacts with Arrow string kernels: one JSON object per row."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc

from airflow_provider_constantcontact.export.arrow_bytes import as_one_value, wrap
from airflow_provider_constantcontact.export.cleaning import clean_field, normalize_emails
from airflow_provider_constantcontact.export.fields import ContactPlan

_CONTROL_ESCAPES = {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}
_SPECIAL = r'["\\\x00-\x1f]'


def json_escape(values: pa.Array) -> pa.Array:
    """Escape ``\\``, ``"`` and control characters (U+0000-U+001F) for a JSON string body.

    Other characters, including non-ASCII ones, go out as UTF-8 as JSON allows. A batch with
    nothing to escape (the common case) costs one regex scan over its bytes.
    """
    if not len(values) or not pc.match_substring_regex(as_one_value(values), _SPECIAL)[0].as_py():
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


def contact_json(batch: pa.RecordBatch, plan: ContactPlan, truncated: dict[str, int]) -> pa.Array:
    """One JSON object per row of ``batch`` (all rows must be valid), as a string array.

    ``{"email":"...","first_name":"...","cf:tier":"..."}`` with absent values omitted;
    ``truncated`` is increased by the number of values each ``text`` field had to shorten.
    The values are cleaned here again rather than kept from pass one: keeping every row's
    cleaned values between the passes would hold the whole segment in memory. Their UTF-8 is
    not checked again: pass one rejected every row holding a value that is not valid UTF-8.
    """
    parts = [wrap(normalize_emails(batch.column(plan.email_column), validate=False), '{"email":"', '"')]
    for spec in plan.specs[1:]:
        cleaned = clean_field(batch.column(plan.field_mapping[spec.name]), spec, validate=False)
        if cleaned.truncated:
            truncated[spec.name] = truncated.get(spec.name, 0) + cleaned.truncated
        key = "," + json.dumps(spec.name, ensure_ascii=False) + ":"
        if spec.kind == "int":
            fragment = wrap(cleaned.values, key)
        else:
            fragment = wrap(json_escape(cleaned.values), key + '"', '"')
        # Null where the value is absent: the whole property is left out of that contact.
        parts.append(pc.fill_null(fragment, ""))
    parts.append(plan.constant("}", batch.num_rows))
    return pc.binary_join_element_wise(*parts, "")
