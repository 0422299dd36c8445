"""Checks against the Constant Contact account before anything is sent: lists and custom fields.

List ids are checked with one GET each when there are at most two, otherwise with one pass over
the account's lists (500 a page), which costs fewer requests at 4 a second; list names are
resolved in that same pass. A wrong API URL makes every id unknown: it is told apart from an
unknown list by one more request, on that error path only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

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
        raise ConstantContactNotFoundError(
            f"Unknown Constant Contact list id(s): {', '.join(unknown)}; nothing was sent"
        )
    return ListTargets(list_ids)


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
    by_name: dict[str, list[str]] = {}
    known_ids: set[str] = set()
    for contact_list in _account_lists(hook):
        known_ids.add(contact_list["list_id"])
        by_name.setdefault(str(contact_list.get("name")), []).append(contact_list["list_id"])
    unknown_ids = [list_id for list_id in list_ids if list_id not in known_ids]
    if unknown_ids:
        raise ConstantContactNotFoundError(
            f"Unknown Constant Contact list id(s): {', '.join(unknown_ids)}; nothing was sent"
        )
    resolved, missing = list(list_ids), []
    for name in list_names:
        found = by_name.get(name, [])
        if len(found) > 1:
            raise ConstantContactValidationError(
                f"{len(found)} contact lists are named {name!r} ({', '.join(found)}): give the one "
                "meant in list_ids instead; nothing was sent"
            )
        if found:
            resolved.append(found[0])
            continue
        near = [other for other in by_name if other.casefold() == name.casefold()]
        if near:
            raise ConstantContactNotFoundError(
                f"No contact list is named {name!r}, but {near[0]!r} is: list names are matched "
                "exactly; nothing was sent"
            )
        missing.append(name)
    if missing and not create_missing:
        raise ConstantContactNotFoundError(
            f"No contact list is named {', '.join(map(repr, missing))}: create it in Constant Contact "
            "or set create_missing_lists=True; nothing was sent"
        )
    log.info("Lists by name: %d found, %d to create", len(list_names) - len(missing), len(missing))
    return ListTargets(list(dict.fromkeys(resolved)), missing)
