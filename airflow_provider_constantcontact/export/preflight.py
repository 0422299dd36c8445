"""Checks against the Constant Contact account before anything is sent: lists and custom fields.

List ids are checked with one GET each when there are at most two, otherwise with one pass over
the account's lists (500 a page), which costs fewer requests at 4 a second; list names are
resolved in that same pass. A wrong API URL makes every id unknown: it is told apart from an
unknown list by one more request, on that error path only.

List names are compared the way a person reads them (:func:`reads_as`): Unicode NFKC, invisible
format characters dropped, runs of white space as one space, no space at either end. A name finds
the one list that reads the same; two such lists are refused (naming their ids); a list that
differs only in case is refused, not created beside it. See docs/export-operator.md "Lists by name".
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from airflow_provider_constantcontact.constants import LIST_ID_PATTERN
from airflow_provider_constantcontact.exceptions import (
    ConstantContactError,
    ConstantContactNotFoundError,
    ConstantContactValidationError,
)
from airflow_provider_constantcontact.export.fields import ContactPlan
from airflow_provider_constantcontact.export.settings import ListTargets

if TYPE_CHECKING:
    from airflow_provider_constantcontact.hooks.constantcontact import ConstantContactHook

#: Up to this many list ids are checked with one GET each; more with one pass over the lists.
MAX_LIST_GETS = 2


def check_lists(
    hook: ConstantContactHook,
    list_ids: list[str],
    list_names: list[str],
    *,
    create_missing: bool,
    log: logging.Logger | Any,
) -> ListTargets:
    """The lists to export to; fails, naming them, for unknown ids or names (unless created)."""
    if list_names:
        return _resolve_names(hook, list_ids, list_names, create_missing, log)
    unknown = _unknown_list_ids(hook, list_ids)
    if unknown:
        if len(unknown) == len(list_ids):  # a wrong API URL makes every id unknown
            _check_api_url(hook)
        raise unknown_list_ids_error(unknown)
    return ListTargets(list_ids)


def unknown_list_ids_error(unknown: list[str]) -> ConstantContactNotFoundError:
    """The error for list ids the account does not have; points to ``list_names`` for names."""
    names = [item for item in unknown if not re.fullmatch(LIST_ID_PATTERN, item)]
    hint = ""
    if names:
        hint = (
            f" {', '.join(map(repr, names))} {'is' if len(names) == 1 else 'are'} not a list id (list "
            "ids are UUIDs, as in the list's URL in Constant Contact): to give a list by its name, "
            "put the name in list_names instead of list_ids."
        )
    return ConstantContactNotFoundError(
        f"Unknown Constant Contact list id(s): {', '.join(unknown)}; nothing was sent.{hint}"
    )


def reads_as(name: str) -> str:
    """How a list name reads to a person: two names with the same result look the same.

    Unicode NFKC (a decomposed "é" is the composed one, a full-width "Ａ" an "A"), invisible
    format characters (zero-width space, soft hyphen) dropped, any run of white space one space,
    none at either end. Case is kept: "VIP" and "vip" read differently.
    """
    text = "".join(char for char in unicodedata.normalize("NFKC", name) if unicodedata.category(char) != "Cf")
    return " ".join(text.split())


def check_custom_fields(hook: ConstantContactHook, plan: ContactPlan) -> None:
    """Every ``cf:<name>`` of the mapping must exist in the account."""
    if not plan.custom_fields:
        return
    existing = {field.get("name") for field in hook.get_custom_fields()}
    missing = [name for name in plan.custom_fields if name not in existing]
    if missing:
        raise ConstantContactValidationError(
            f"Custom field(s) {', '.join(missing)} do not exist in the Constant Contact account "
            "(create them first; the name after 'cf:' is the field's name, not its label); "
            "nothing was sent"
        )


def _unknown_list_ids(hook: ConstantContactHook, list_ids: list[str]) -> list[str]:
    """The ids in ``list_ids`` that name no contact list of the account, in the given order."""
    if len(list_ids) <= MAX_LIST_GETS:
        unknown = []
        for list_id in list_ids:
            try:
                hook.get_contact_list(list_id)
            except ConstantContactNotFoundError:
                unknown.append(list_id)
        return unknown
    missing = set(list_ids)
    for contact_list in _account_lists(hook):
        missing.discard(contact_list.get("list_id"))
        if not missing:  # every id found: no need for the remaining pages
            break
    return [list_id for list_id in list_ids if list_id in missing]


def _account_lists(hook: ConstantContactHook) -> Iterator[dict[str, Any]]:
    """Every contact list of the account; a 404 is told apart from a wrong API URL first."""
    try:
        yield from hook.iter_contact_lists()
    except ConstantContactNotFoundError:
        _check_api_url(hook)
        raise


def _check_api_url(hook: ConstantContactHook) -> None:
    """After a 404: fail naming the API URL when it does not serve the contact lists at all."""
    try:
        body = hook.request("GET", "/contact_lists", params={"limit": 1})
    except ConstantContactError as err:
        if err.status != 404:
            raise
        body = None
    if not isinstance(body, dict) or "lists" not in body:
        raise ConstantContactNotFoundError(
            f"The Constant Contact API URL {hook.api_base_url} does not serve contact lists "
            "(GET /contact_lists failed): check the connection's api_base_url, which must end in /v3 "
            "(default https://api.cc.email/v3); nothing was sent"
        )


def _resolve_names(
    hook: ConstantContactHook,
    list_ids: list[str],
    list_names: list[str],
    create_missing: bool,
    log: logging.Logger | Any,
) -> ListTargets:
    """Ids for ``list_names`` (and a check of ``list_ids``) in one pass over the account's lists."""
    by_reading = _lists_by_reading(hook)
    known_ids: set[str] = {item["list_id"] for items in by_reading.values() for item in items}
    unknown_ids = [list_id for list_id in list_ids if list_id not in known_ids]
    if unknown_ids:
        raise unknown_list_ids_error(unknown_ids)
    resolved, missing = list(list_ids), []
    for name in list_names:
        found = find_list_by_name(by_reading, name)
        if found is None:
            missing.append(unicodedata.normalize("NFC", name))
        else:
            resolved.append(found)
    if missing and not create_missing:
        raise ConstantContactNotFoundError(
            f"No contact list is named {', '.join(map(repr, missing))}: create it in Constant Contact "
            "or set create_missing_lists=True; nothing was sent"
        )
    log.info("Lists by name: %d found, %d to create", len(list_names) - len(missing), len(missing))
    return ListTargets(list(dict.fromkeys(resolved)), missing)


def _lists_by_reading(hook: ConstantContactHook) -> dict[str, list[dict[str, Any]]]:
    """Every list of the account (one pass), grouped by how its name reads (:func:`reads_as`)."""
    by_reading: dict[str, list[dict[str, Any]]] = {}
    for contact_list in _account_lists(hook):
        by_reading.setdefault(reads_as(str(contact_list.get("name"))), []).append(contact_list)
    return by_reading


def find_list_by_name(by_reading: dict[str, list[dict[str, Any]]], name: str) -> str | None:
    """The id of the one list that reads as ``name``; None when no list reads like it at all.

    ``by_reading`` maps :func:`reads_as` of each list's name to the lists. Fails when two lists
    read as ``name``, or when only a list differing in case does (creating ``name`` beside it
    would make two lists a person tells apart by case alone).
    """
    reading = reads_as(name)
    found = by_reading.get(reading, [])
    if len(found) > 1:
        described = ", ".join(f"{item.get('list_id')} ({str(item.get('name'))!r})" for item in found)
        raise ConstantContactValidationError(
            f"{len(found)} contact lists read as {name!r}: {described}. Rename one in Constant Contact, "
            "or give the one meant in list_ids; nothing was sent"
        )
    if found:
        return str(found[0].get("list_id"))
    near = [
        item for key, items in by_reading.items() if key.casefold() == reading.casefold() for item in items
    ]
    if near:
        described = ", ".join(f"{str(item.get('name'))!r} ({item.get('list_id')})" for item in near)
        raise ConstantContactNotFoundError(
            f"No contact list reads as {name!r}, but {described} differs only in case: use that name "
            "(list names are matched case-sensitively), or rename the list; no list was created "
            "and nothing was sent"
        )
    return None


def create_or_find_list(hook: ConstantContactHook, name: str, log: logging.Logger | Any) -> str:
    """Create the list ``name``; on a 409 (another run created it meanwhile) find it and use it."""
    try:
        created = hook.create_contact_list(name)
    except ConstantContactError as err:
        if err.status != 409:
            raise
        list_id = find_list_by_name(_lists_by_reading(hook), name)
        if list_id is None:
            raise ConstantContactValidationError(
                f"Creating the contact list {name!r} failed with 409 (the name exists), but no list "
                "reads as that name: Constant Contact compares list names in a way this provider does "
                "not; rename the existing list or give its id in list_ids. No contact was imported or removed"
            ) from err
        log.info("The contact list %r was created meanwhile (by another run?): using %s", name, list_id)
        return list_id
    log.info("Created the contact list %r: %s", name, created["list_id"])
    return str(created["list_id"])
