"""Sensor waiting for Constant Contact import activities to finish."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_provider_constantcontact._compat import AirflowSensorTimeout, conf, reschedule_safe_context
from airflow_provider_constantcontact.exceptions import ConstantContactImportError
from airflow_provider_constantcontact.hooks.constantcontact import ConstantContactHook
from airflow_provider_constantcontact.triggers.constantcontact import ImportWaitEvent, defer_import_wait
from airflow_provider_constantcontact.utils.activities import (
    ActivitiesSummary,
    ActivityPoller,
    describe_progress,
    normalize_activity_ids,
    summarize_activities,
)
from airflow_provider_constantcontact.utils.templated import parse_number

if TYPE_CHECKING:
    from airflow.sdk import Context


class ConstantContactImportSensor(BaseSensorOperator):
    """Wait until Constant Contact import activities finish; return their summary (XCom).

    Succeeds when every activity is ``completed``; fails with the activities' errors as soon as
    one ends ``failed``, ``cancelled`` or ``timed_out``, or, once all finished, when more than
    ``max_error_ratio`` of the items were rejected. Each poke costs one API request whatever the
    number of activities (the activities listing). An empty ``activity_ids`` (e.g. a plan-only
    export) succeeds at once with an empty summary.

    Works in ``poke`` and ``reschedule`` modes and, with ``deferrable=True``, waits in the
    triggerer (:class:`ConstantContactImportTrigger`) without holding a worker slot; there the
    poll interval backs off from ``poke_interval`` up to ``max_poll_interval``. In poke and
    reschedule modes the interval is Airflow's: fixed, or with ``exponential_backoff=True``
    doubling from ``poke_interval`` up to ``max_wait`` (set it, e.g. 300 s: without it the
    interval grows until ``timeout``). A transient error (5xx, throttling, network) after the
    hook's own retries only makes that poke not done; auth, quota and not-found errors fail.

    :param activity_ids: (templated) one activity id, a list of ids, a JSON string list, or the
        export operator's ``export.output["activity_ids"]``.
    :param constantcontact_conn_id: the Constant Contact connection.
    :param deferrable: wait in the triggerer (default: ``[operators] default_deferrable``).
    :param poke_interval: seconds between polls (the first ones, when deferred).
    :param timeout: seconds to wait in all before failing with AirflowSensorTimeout.
    :param max_error_ratio: (templated) fail when ``error_count / items_total_count`` over all activities
        exceeds this fraction (``None``: any number of rejected items passes).
    :param max_poll_interval: cap in seconds of the backed-off interval in deferrable mode
        (``max_wait`` is its counterpart in poke and reschedule modes).
    """

    template_fields: Sequence[str] = ("activity_ids", "max_error_ratio")
    ui_color = "#1856ed"
    ui_fgcolor = "#ffffff"
    _poller: ActivityPoller  # set by execute, used by each poke of the try

    def __init__(
        self,
        *,
        activity_ids: Any,
        constantcontact_conn_id: str = ConstantContactHook.default_conn_name,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poke_interval: timedelta | float = 60,
        timeout: timedelta | float = 3600 * 6,
        max_error_ratio: float | str | None = None,
        max_poll_interval: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        self.activity_ids = activity_ids
        self.constantcontact_conn_id = constantcontact_conn_id
        self.deferrable = deferrable
        self.max_error_ratio = max_error_ratio
        self.max_poll_interval = max_poll_interval

    def _ids(self) -> list[str]:
        return normalize_activity_ids(self.activity_ids)

    def _max_error_ratio(self) -> float | None:
        """The rendered threshold as a number (it may come from a template)."""
        return parse_number(self.max_error_ratio, "max_error_ratio", minimum=0, maximum=1)

    @cached_property
    def hook(self) -> ConstantContactHook:
        """The hook every poll of this task goes through."""
        return ConstantContactHook(self.constantcontact_conn_id)

    def poke(self, context: Context) -> PokeReturnValue:
        """One poll: done with the summary, not done while running or after a transient error."""
        summary = self._poller.step(self.hook, self.log)
        done = summary is not None and summary["done"]
        return PokeReturnValue(is_done=done, xcom_value=summary if done else None)

    def execute(self, context: Context) -> Any:
        ids = self._ids()
        if not ids:
            self.log.info("No import activity to wait for")
            return summarize_activities({})
        # Kept across the pokes of one try (poke mode): finished activities are not asked for
        # again. In reschedule mode every poke is a new try and starts afresh.
        self._poller = ActivityPoller(ids, max_error_ratio=self._max_error_ratio())
        if not self.deferrable:
            if self.reschedule:
                context = reschedule_safe_context(context)
            return super().execute(context)
        # One poll first: an import that already finished needs no trip through the triggerer.
        # After a transient error it defers all the same; the trigger polls again.
        summary = self._poller.step(self.hook, self.log)
        if summary is not None and summary["done"]:
            return summary
        defer_import_wait(
            self,
            activity_ids=ids,
            constantcontact_conn_id=self.constantcontact_conn_id,
            poll_interval=self.poke_interval,
            timeout=self.timeout,
            max_error_ratio=self._poller.max_error_ratio,
            max_poll_interval=self.max_poll_interval,
        )

    def execute_complete(self, context: Context, event: ImportWaitEvent) -> ActivitiesSummary:
        """Resume after the trigger: return the summary, or fail with the trigger's message."""
        status = event.get("status")
        if status == "success":
            summary = event["summary"]
            if summary is None:  # the trigger reports success only after a poll succeeded
                raise ConstantContactImportError("The import wait reported success without a summary")
            self.log.info(describe_progress(summary))
            return summary
        if status == "timeout":
            raise AirflowSensorTimeout(event.get("message") or "Timed out waiting for the import")
        message = event.get("message") or f"Unexpected trigger event status {status!r}"
        raise ConstantContactImportError(message)
