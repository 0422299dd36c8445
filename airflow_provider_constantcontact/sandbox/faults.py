"""Injected faults: answer the next N matching requests with an error, drop their connection, or
run an action (wait, change the account) before processing them as usual.

A fault can first let ``after`` matching requests through: ``after=2`` fails the third one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from airflow_provider_constantcontact.sandbox.constants import API_PREFIX


@dataclass
class _Fault:
    remaining: int
    status: int | None  # None: drop the connection (unless ``action`` is set)
    path_prefix: str
    after: int = 0  # matching requests still to let through before this fault applies
    method: str | None = None  # None: any method
    #: Run (outside the sandbox's lock) before the request is processed as usual.
    action: Callable[[], None] | None = None


class Faults:
    """Queue of pending faults, consumed in order by matching requests (callers hold the lock)."""

    def __init__(self) -> None:
        self._pending: list[_Fault] = []

    def add(
        self,
        count: int,
        status: int | None,
        path_prefix: str | None,
        after: int = 0,
        *,
        method: str | None = None,
        action: Callable[[], None] | None = None,
    ) -> None:
        """Fail (status), drop (None) or run ``action`` before ``count`` requests under ``path_prefix``
        (default /v3) and of ``method`` (default any), once ``after`` matching requests have gone through."""
        if count < 1:
            raise ValueError("count must be at least 1")
        if after < 0:
            raise ValueError("after must be 0 or more")
        fault = _Fault(
            count, status, path_prefix or API_PREFIX, after, method.upper() if method else None, action
        )
        self._pending.append(fault)

    def take(self, path: str, method: str = "GET") -> _Fault | None:
        """The fault that applies to a ``method`` request for ``path``, consuming one use of it.

        Every matching fault still letting requests through counts this one; the first
        matching fault that no longer does applies."""
        chosen = None
        for fault in self._pending:
            if not path.startswith(fault.path_prefix) or fault.method not in (None, method):
                continue
            if fault.after > 0:
                fault.after -= 1
            elif chosen is None:
                chosen = fault
        if chosen is not None:
            chosen.remaining -= 1
            if chosen.remaining <= 0:
                self._pending.remove(chosen)
        return chosen
