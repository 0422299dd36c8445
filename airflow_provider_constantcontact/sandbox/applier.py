"""The background applier: applies accepted imports to the account, oldest first.

The import endpoint answers as soon as a body is validated (like the real service, which
processes imports asynchronously); one thread then applies the queued imports in order. It
stays out of the way of requests being served: it starts only once no request has been in
progress for ``IDLE_SECONDS`` and applies ``STEP_CONTACTS`` contacts at a time under the
sandbox lock, stopping between steps as soon as a request comes in, so clients are not slowed
down by the Python work of applying (threads share one interpreter lock). Reads that depend
on contacts do not wait for it: they drain the queue themselves (``SandboxState.drain``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from airflow_provider_constantcontact.sandbox.state import SandboxState

#: How long the server must have been idle before the applier starts on the queue.
IDLE_SECONDS = 0.05
#: Contacts applied in one step (a few milliseconds of work).
STEP_CONTACTS = 2000


class Applier:
    """One thread applying ``state.pending`` while the server is idle; ``start``/``stop`` it."""

    def __init__(self, state: SandboxState, lock: threading.RLock) -> None:
        self._state = state
        self._lock = lock
        self._wake = threading.Condition()
        self._busy = 0
        self._requests = 0
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the applier thread."""
        with self._wake:
            self._stopping = False
        self._thread = threading.Thread(target=self._run, name="cc-sandbox-applier", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread after its current step; queued imports stay queued (the next read
        applies them)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        thread.join()

    def notify(self) -> None:
        """An import was queued."""
        with self._wake:
            self._wake.notify_all()

    @contextmanager
    def serving(self) -> Iterator[None]:
        """Mark a request in progress: the applier waits until none is."""
        with self._wake:
            self._busy += 1
            self._requests += 1
        try:
            yield
        finally:
            with self._wake:
                self._busy -= 1
                if not self._busy:
                    self._wake.notify_all()

    def _run(self) -> None:
        seen = -1  # the request count when the server was last seen idle
        while True:
            with self._wake:
                while not self._stopping:
                    if self._busy or not self._state.pending:
                        self._wake.wait()
                    elif self._requests != seen:  # requests came since: wait for a quiet moment
                        seen = self._requests
                        self._wake.wait(IDLE_SECONDS)
                    else:
                        break
                if self._stopping:
                    return
            with self._lock:
                self._state.apply_next(STEP_CONTACTS)
