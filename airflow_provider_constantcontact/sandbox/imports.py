"""Parsing, truncation and validation of ``contacts_json_import`` bodies.

The work is split so the expensive part (``json.loads`` and a tight validation loop) runs
outside the sandbox lock; only applying the result to the state needs it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from itertools import chain
from typing import Any, TypeGuard

from airflow_provider_constantcontact.sandbox.constants import (
    IMPORT_FIELD_LIMITS,
    IMPORT_INT_FIELDS,
    LONG_FIELD_LIMIT,
    MAX_CUSTOM_FIELDS_PER_CONTACT,
    MAX_IMPORT_BYTES,
    MAX_IMPORT_CONTACTS,
    MAX_LIST_IDS,
    SHORT_FIELD_LIMIT,
)
from airflow_provider_constantcontact.sandbox.errors import bad_request, reject_unknown_properties

EMAIL_RE = re.compile(r"[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+\Z")
#: Many addresses at once, one a line: a single regex call instead of one per contact.
_EMAIL_LINES = re.compile(r"(?:[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+\n)*")
#: Import properties whose values are strings (the fast validation path accepts only these).
_STRING_PROPERTIES = frozenset(IMPORT_FIELD_LIMITS)
_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
#: The top-level properties of a contacts_json_import body.
_IMPORT_PROPERTIES = frozenset({"import_data", "list_ids"})


def parse_json_body(body: bytes) -> Any:
    """Decode a JSON request body; 400 when it is not valid JSON."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise bad_request("The request body is not valid JSON.", "malformed_json") from None


def _skip_ws(text: str, i: int) -> int:
    """The index of the first character at or after ``i`` that is not JSON whitespace."""
    match = _WS.match(text, i)  # always matches: the pattern accepts the empty string
    return match.end() if match else i


def items_within(body: bytes, limit: int, key: str = "import_data") -> int | None:
    """How many elements of the top-level array ``key`` end within the first ``limit`` bytes.

    The text is decoded as latin-1 so character offsets equal byte offsets; None when the
    array does not start within the limit.
    """
    text = body[:limit].decode("latin-1")
    try:
        i = _skip_ws(text, 0)
        if text[i] != "{":
            return None
        i += 1
        while True:
            i = _skip_ws(text, i)
            if text[i] == "}":
                return None
            name, i = _DECODER.raw_decode(text, i)
            i = _skip_ws(text, i) + 1  # skip ':'
            i = _skip_ws(text, i)
            if name == key:
                break
            _, i = _DECODER.raw_decode(text, i)
            i = _skip_ws(text, i)
            if text[i] == ",":
                i += 1
    except (ValueError, IndexError):
        return None
    if text[i] != "[":
        return None
    i += 1
    count = 0
    try:
        while True:
            i = _skip_ws(text, i)
            if text[i] == "]":
                return count
            _, i = _DECODER.raw_decode(text, i)
            count += 1
            i = _skip_ws(text, i)
            if text[i] == ",":
                i += 1
    except (ValueError, IndexError):
        return count


def take_import(body: bytes, payload: Any) -> tuple[list[Any], list[Any]]:
    """Return (contacts taken in, list_ids) after the real service's silent truncation.

    400 when the body is not an object of ``import_data`` and ``list_ids`` (and nothing else).
    Over 4 MB only the contacts whose JSON ends within the first 4,194,304 bytes of the body
    are taken; then at most the first 40,000 contacts. When no contact ends within the first
    4 MB (``import_data`` starts after the cut, or its first contact crosses it) the request
    is a 400 rather than an activity of 0 items that would look like a successful import.
    """
    if not isinstance(payload, dict):
        raise bad_request("The request body must be a JSON object.")
    reject_unknown_properties(payload, _IMPORT_PROPERTIES, "contacts_json_import.unknown_property")
    contacts = payload.get("import_data")
    list_ids = payload.get("list_ids")
    if not isinstance(contacts, list) or not contacts:
        raise bad_request("import_data must be an array of 1 to 40000 contacts.", "import_data.invalid")
    if not isinstance(list_ids, list) or not 1 <= len(list_ids) <= MAX_LIST_IDS:
        raise bad_request(f"list_ids must hold 1 to {MAX_LIST_IDS} list ids.", "list_ids.invalid")
    if not all(isinstance(list_id, str) for list_id in list_ids):
        raise bad_request("list_ids must be strings.", "list_ids.invalid")
    if len(body) > MAX_IMPORT_BYTES:
        contacts = contacts[: items_within(body, MAX_IMPORT_BYTES) or 0]
        if not contacts:  # nothing would be imported: refuse it, as an empty import_data is
            raise bad_request(
                f"No contact of import_data ends within the first {MAX_IMPORT_BYTES} bytes of the body.",
                "import_data.invalid",
            )
    return contacts[:MAX_IMPORT_CONTACTS], list_ids


def all_valid_emails(emails: list[Any]) -> TypeGuard[list[str]]:
    """True when every item is a valid email address (one regex pass over all of them)."""
    try:
        text = "\n".join(emails) + "\n"
    except TypeError:  # a missing (None) or non-string email
        return False
    return text.count("\n") == len(emails) and _EMAIL_LINES.fullmatch(text) is not None


def _plainly_valid(contacts: list[Any], custom_field_names: Collection[str]) -> bool:
    """The common case checked with C-level loops: objects holding only known string
    properties and existing custom fields, every value a string of at most 50 characters."""
    if len(custom_field_names) > MAX_CUSTOM_FIELDS_PER_CONTACT or set(map(type, contacts)) != {dict}:
        return False
    allowed = _STRING_PROPERTIES.union([f"cf:{name}" for name in custom_field_names])
    if not all(map(allowed.issuperset, contacts)):
        return False
    values = list(chain.from_iterable(map(dict.values, contacts)))
    return set(map(type, values)) <= {str} and max(map(len, values), default=0) <= SHORT_FIELD_LIMIT


def validate_contacts(contacts: list[Any], custom_field_names: Collection[str]) -> None:
    """Reject the request (400) on unknown properties, over-long values or bad custom fields.

    Messages name the row and property, never the value (it may be personal data).
    """
    if _plainly_valid(contacts, custom_field_names):
        return
    limits = IMPORT_FIELD_LIMITS
    int_fields = IMPORT_INT_FIELDS
    for row, contact in enumerate(contacts):
        if type(contact) is not dict:
            raise bad_request(f"import_data[{row}] must be an object.", "import_data.invalid")
        custom_count = 0
        for name, value in contact.items():
            limit = limits.get(name)
            if limit is None:
                if name.startswith("cf:"):
                    custom_count += 1
                    if name[3:] not in custom_field_names:
                        raise bad_request(
                            f"import_data[{row}]: custom field '{name}' does not exist.",
                            "import_data.custom_field.not_found",
                        )
                    limit = LONG_FIELD_LIMIT
                elif name in int_fields:
                    low, high = int_fields[name]
                    if value is not None and (type(value) is not int or not low <= value <= high):
                        raise bad_request(
                            f"import_data[{row}].{name} must be an integer from {low} to {high}.",
                            "import_data.invalid",
                        )
                    continue
                else:
                    raise bad_request(
                        f"import_data[{row}]: unknown property '{name[:60]}'.", "import_data.unknown_property"
                    )
            if value is None:
                continue
            if type(value) is not str:
                raise bad_request(f"import_data[{row}].{name} must be a string.", "import_data.invalid")
            if len(value) > limit:
                raise bad_request(
                    f"import_data[{row}].{name} exceeds the maximum length of {limit}.",
                    "import_data.field.too_long",
                )
        if custom_count > MAX_CUSTOM_FIELDS_PER_CONTACT:
            raise bad_request(
                f"import_data[{row}] has more than {MAX_CUSTOM_FIELDS_PER_CONTACT} custom fields.",
                "import_data.custom_fields.too_many",
            )
