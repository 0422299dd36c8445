"""Deferrable wait for Constant Contact import activities, run by the Airflow triggerer.

Constant Contact may take up to an hour to process a large import; waiting in the triggerer
frees the worker slot. The trigger's only state is the activity ids (plus its settings), so a
triggerer restart simply re-polls them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_constantcontact._compat import aget_connection, run_blocking
from airflow_provider_constantcontact.utils.activities import (
    ActivitiesSummary,
    ActivityPoller,
    next_poll_interval,
    normalize_activity_ids,
)

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Connection

    from airflow_provider_constantcontact.hooks.constantcontact import ConstantContactHook


def _build_hook(conn_id: str, connection: Connection) -> ConstantContactHook:
    """Import and build the hook; called in a worker thread, never on the triggerer's loop."""
    from airflow_provider_constantcontact.hooks.constantcontact import ConstantContactHook

    return ConstantContactHook(conn_id, connection=connection)


class _EventAlways(TypedDict):
    status: Literal["success", "error", "timeout"]
    #: The last poll's summary (None when no poll succeeded).
    summary: ActivitiesSummary | None


class ImportWaitEvent(_EventAlways, total=False):
    """The trigger's one event, which ``execute_complete`` of the deferring task receives."""

    #: With ``error`` and ``timeout``: what went wrong.
    message: str
    #: The deferring task's ``resume_state``, unchanged.
    resume_state: dict[str, Any]


class ConstantContactImportTrigger(BaseTrigger):
    """Poll import activities until all finish, one finishes badly, or ``end_time`` passes.

    Yields exactly one event: ``{"status": "success", "summary": ...}`` when every activity
    completed, or ``{"status": "error" | "timeout", "message": ..., "summary": ...}``; each also
    carries ``resume_state`` as given.
    Each poll is one request (the activities listing); the interval backs off from
    ``poll_interval`` up to ``max_poll_interval`` (default 300 s). Transient errors (5xx,
    throttling, network) are logged and polling goes on. Blocking HTTP runs in a worker thread,
    never on the triggerer's event loop.

    :param activity_ids: ids of the import activities to wait for.
    :param constantcontact_conn_id: the Constant Contact connection.
    :param poll_interval: seconds between the first polls.
    :param end_time: Unix timestamp (or aware datetime) after which the trigger reports a timeout.
    :param max_error_ratio: fail when ``error_count / items_total_count`` exceeds it.
    :param max_poll_interval: cap of the backed-off poll interval, in seconds.
    :param resume_state: JSON-serialisable state the deferring task needs when it resumes (the
        export's summary), returned unchanged in the event: ``airflow dags test`` resumes a task
        with the event only, dropping ``defer()`` kwargs. Counts and ids only, never personal data.
    """

    def __init__(
        self,
        activity_ids: Sequence[str],
        constantcontact_conn_id: str,
        poll_interval: float,
        end_time: float | datetime,
        max_error_ratio: float | None = None,
        max_poll_interval: float | None = None,
        resume_state: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # BaseTrigger.__init__ is unannotated
        self.activity_ids = normalize_activity_ids(activity_ids)
        self.constantcontact_conn_id = constantcontact_conn_id
        self.poll_interval = float(poll_interval)
        self.end_time = end_time.timestamp() if isinstance(end_time, datetime) else float(end_time)
        self.max_error_ratio = max_error_ratio
        self.max_poll_interval = max_poll_interval
        self.resume_state = resume_state

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "activity_ids": list(self.activity_ids),
                "constantcontact_conn_id": self.constantcontact_conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "max_error_ratio": self.max_error_ratio,
                "max_poll_interval": self.max_poll_interval,
                "resume_state": self.resume_state,
            },
        )

    async def _make_hook(self) -> ConstantContactHook:
        connection = await aget_connection(self.constantcontact_conn_id)
        # Imported and built off the loop: the hook's import (requests, ...) would otherwise be
        # the triggerer's first blocking moment; the triggerer imports this module on its loop.
        return await run_blocking(_build_hook, self.constantcontact_conn_id, connection)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        poller = ActivityPoller(self.activity_ids, max_error_ratio=self.max_error_ratio)
        try:
            hook = await self._make_hook()
        except Exception as error:
            yield TriggerEvent(self._event("error", f"Cannot use connection: {error}", None))
            return
        interval = self.poll_interval
        while True:
            try:
                summary = await run_blocking(poller.step, hook, self.log)
            except Exception as error:  # a failed activity, or auth, quota, not found
                yield TriggerEvent(self._event("error", str(error), poller.summary))
                return
            if summary is not None and summary["done"]:
                yield TriggerEvent(self._event("success", None, summary))
                return
            remaining = self.end_time - time.time()
            if remaining <= 0:
                last = poller.summary
                message = (
                    "Timed out waiting for Constant Contact import activities "
                    f"{', '.join(poller.unfinished)}"
                    + (f" (last seen {last['percent_done']:.1f}% done)" if last else "")
                )
                yield TriggerEvent(self._event("timeout", message, last))
                return
            await asyncio.sleep(min(interval, remaining))
            interval = next_poll_interval(interval, self.poll_interval, self.max_poll_interval)

    def _event(
        self,
        status: Literal["success", "error", "timeout"],
        message: str | None,
        summary: ActivitiesSummary | None,
    ) -> ImportWaitEvent:
        event: ImportWaitEvent = {"status": status, "summary": summary}
        if message is not None:
            event["message"] = message
        if self.resume_state is not None:
            event["resume_state"] = self.resume_state
        return event


def defer_import_wait(
    task: BaseOperator,
    *,
    activity_ids: Sequence[str],
    constantcontact_conn_id: str,
    poll_interval: float,
    timeout: float,
    max_error_ratio: float | None = None,
    max_poll_interval: float | None = None,
    resume_state: dict[str, Any] | None = None,
) -> None:
    """Defer ``task`` to :class:`ConstantContactImportTrigger`; it resumes in ``execute_complete``.

    The one way the export operator and the sensor defer. The task's own deferral timeout lies a
    little beyond the trigger's ``end_time``, so the trigger reports the timeout with the last
    progress it saw; the task's timeout is only the backstop.
    """
    task.defer(
        trigger=ConstantContactImportTrigger(
            activity_ids=activity_ids,
            constantcontact_conn_id=constantcontact_conn_id,
            poll_interval=poll_interval,
            end_time=time.time() + timeout,
            max_error_ratio=max_error_ratio,
            max_poll_interval=max_poll_interval,
            resume_state=resume_state,
        ),
        method_name="execute_complete",
        timeout=timedelta(seconds=timeout + max(poll_interval, 60)),
    )
