"""Send import bodies from one background thread while the next body is being built."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from airflow_provider_constantcontact.export.batches import ImportBody

# Bodies queued for the sender thread beyond the one being sent: building overlaps sending,
# and at most a few 4 MB bodies are alive at once.
MAX_QUEUED_BODIES = 2


class _NotSent(Exception):
    """A queued body that was not sent because an earlier one failed."""


def send_bodies(
    post: Callable[[bytes], dict[str, Any]], bodies: Iterator[ImportBody], log: logging.Logger | Any
) -> Iterator[tuple[int, ImportBody, dict[str, Any]]]:
    """POST ``bodies`` in order from one sender thread; yield ``(number, body, activity)``.

    ``post`` is the hook's ``import_contacts_body`` (one thread: the hook is not shared). On an
    error nothing further is sent, and the error is raised after logging what was imported.
    """
    stop = threading.Event()
    accepted = [0, 0]  # requests, contacts; written by the sender thread only

    def send(body: ImportBody) -> dict[str, Any]:
        if stop.is_set():  # an earlier body failed: send nothing more
            raise _NotSent
        try:
            activity = post(body.body)
        except BaseException:
            stop.set()
            raise
        accepted[0] += 1
        accepted[1] += body.contacts
        return activity

    pending: list[tuple[ImportBody, Future[dict[str, Any]]]] = []
    number = 0
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cc-import") as pool:
            try:
                for body in bodies:
                    pending.append((body, pool.submit(send, body)))
                    while len(pending) > MAX_QUEUED_BODIES or (pending and pending[0][1].done()):
                        finished, future = pending.pop(0)
                        number += 1
                        yield number, finished, future.result()
                while pending:
                    finished, future = pending.pop(0)
                    number += 1
                    yield number, finished, future.result()
            except BaseException:
                stop.set()
                raise
    except BaseException:
        # The pool has finished what was in flight: these counts are final.
        log.error(
            "Export stopped after %d import request(s) with %d contacts were accepted; "
            "re-running the task is safe (imports update contacts by email)",
            *accepted,
        )
        raise
