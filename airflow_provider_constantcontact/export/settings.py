"""What an export is asked to do: its validated settings and its target lists."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from airflow_provider_constantcontact.export.fields import ContactPlan

SYNC_MODES = ("upsert", "mirror")
#: Stands in for the id of a list a plan-only run would create (same length as a real id: body sizes).
NEW_LIST_PLACEHOLDER = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True)
class ListTargets:
    """The lists to export to: existing ones by id, and names of lists to create first."""

    list_ids: list[str]
    names_to_create: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ExportSettings:
    """Everything an export needs to know besides the data, the lists and the hook, already validated."""

    plan: ContactPlan
    segment_column: str | None = None
    segments: list[Any] | None = None
    rejects_path: str | None = None
    #: Connection for object storage (the source, the rejects file).
    storage_conn_id: str | None = None
    max_contacts: int | None = None
    #: Check and prepare everything, change nothing in Constant Contact.
    plan_only: bool = False
    #: "upsert" adds and updates; "mirror" also removes members who are not in the segment.
    sync_mode: str = "upsert"
    max_removal_ratio: float = 0.1
    removals_path: str | None = None
    #: Export state (docs/export-state.md): where this task remembers what it put into its lists.
    state_path: str | None = None
    #: With state: re-send every contact of the segment (minus those who left) and re-read the lists.
    full_refresh: bool = False

    @property
    def outputs(self) -> dict[str, str | None]:
        """Every output parameter and its value: each obeys the rules of ``export/output_paths.py``."""
        return {
            "rejects_path": self.rejects_path,
            "removals_path": self.removals_path,
            "state_path": self.state_path,
        }

    @property
    def columns(self) -> list[str]:
        """Every column the export reads: the mapped ones and the segment column."""
        return list(
            dict.fromkeys([*self.plan.columns, *([self.segment_column] if self.segment_column else [])])
        )
