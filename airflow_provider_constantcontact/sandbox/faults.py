"""Injected faults: answer the next N matching requests with an error, or drop their connection.

A fault can first let ``after`` matching requests through: ``after=2`` fails the third one.
"""

from __future__ import annotations

from dataclasses import dataclass

from airflow_provider_constantcontact.sandbox.constants import API_PREFIX


@dataclass
class _Fault:
    remaining: int
    status: int | None  # None: drop the connection
    path_prefix: str
    after: int = 0  # matching requests still to let through before this fault applies


class Faults:
    """Queue of pending faults, consumed in order by matching requests (callers hold the lock)."""

    def __init__(self) -> None:
        self._pending: list[_Fault] = []

    def add(self, count: int, status: int | None, path_prefix: str | None, after: int = 0) -> None:
        """Fail (status) or drop (None) ``count`` requests under ``path_prefix`` (default /v3),
        once ``after`` matching requests have gone through."""
        if count < 1:
            raise ValueError("count must be at least 1")
        if after < 0:
            raise ValueError("after must be 0 or more")
        self._pending.append(_Fault(count, status, path_prefix or API_PREFIX, after))

    def take(self, path: str) -> _Fault | None:
        """The fault that applies to a request for ``path``, consuming one use of it.

        Every matching fault still letting requests through counts this one; the first
        matching fault that no longer does applies."""
        chosen = None
        for fault in self._pending:
            if not path.startswith(fault.path_prefix):
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
