"""Did Constant Contact take in every contact sent? The import activities' counters, read safely.

What the counters mean is only partly documented, so a completed import fails this check only
when a counter shows *fewer* contacts than were sent under every reading of it:

- ``items_total_count`` is "the total number of items to be processed", unit undocumented. Every
  contact taken in is an item, so fewer items than contacts means contacts were lost; more is
  fine (a JSON import is processed as a CSV file, whose headings row may be counted).
- ``person_count`` is "the total number of contacts in an import contacts request". Whether it
  counts contacts flagged as errors or unsubscribed is undocumented, so it is read together with
  ``error_count``, ``correctable_count`` and ``cannot_add_to_list_count``: their sum counts every
  contact taken in at least once however they overlap, so a sum below the contacts sent is a drop.

Each import activity is checked against the contacts of its own request body, so one short body
is not hidden by another activity's extra items. See docs/export-operator.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_provider_constantcontact.exceptions import ConstantContactImportError

#: Counters of an import activity whose sum counts every contact it took in at least once.
CONTACT_COUNTERS = ("person_count", "error_count", "correctable_count", "cannot_add_to_list_count")


def contacts_reported(status: Mapping[str, int]) -> int:
    """The fewest contacts an import activity's counters can mean it took in (see the module doc)."""
    return min(status["items_total_count"], sum(status[name] for name in CONTACT_COUNTERS))


def check_contacts_taken(
    sent_by_activity: Mapping[str, int] | None,
    contacts_sent: int,
    activities: Mapping[str, Mapping[str, Any]],
    removal_ids: set[str],
) -> None:
    """Raise ConstantContactImportError when an import activity reports fewer contacts than sent.

    ``sent_by_activity`` maps each import activity to the contacts of its body; without it (a
    summary from an older version) the import activities are checked together against
    ``contacts_sent``. ``activities`` are the summarised activities of the wait.
    """
    imports = {aid: entry["status"] for aid, entry in activities.items() if aid not in removal_ids}
    if sent_by_activity is None:
        totals = {
            name: sum(status[name] for status in imports.values())
            for name in ("items_total_count", *CONTACT_COUNTERS)
        }
        checks = {"the import activities together": (contacts_sent, totals)}
    else:
        checks = {f"activity {aid}": (sent, imports[aid]) for aid, sent in sent_by_activity.items()}
    short = []
    dropped = 0
    for what, (sent, status) in checks.items():
        reported = contacts_reported(status)
        if reported < sent:
            dropped += sent - reported
            short.append(
                f"{what}: {sent:,} contacts sent, {status['items_total_count']:,} items and "
                f"{sum(status[name] for name in CONTACT_COUNTERS):,} contacts reported"
            )
    if short:
        raise ConstantContactImportError(
            f"Constant Contact reports fewer contacts than the export sent ({'; '.join(short)}): "
            f"at least {dropped:,} contacts were dropped by the service (a body cut short?). "
            "Re-running the export is safe: imports are upserts by email."
        )
