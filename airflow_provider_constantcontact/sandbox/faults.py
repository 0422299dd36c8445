"""Injected faults: answer the next N matching requests with an error, or drop their connection."""

from __future__ import annotations

from dataclasses import dataclass

from airflow_provider_constantcontact.sandbox.constants import API_PREFIX


@dataclass
class _Fault:
    remaining: int
    status: int | None  # None: drop the connection
    path_prefix: str


class Faults:
    """Queue of pending faults, consumed in order by matching requests (callers hold the lock)."""

    def __init__(self) -> None:
        self._pending: list[_Fault] = []

    def add(self, count: int, status: int | None, path_prefix: str | None) -> None:
        """Fail (status) or drop (None) the next ``count`` requests under ``path_prefix`` (default /v3)."""
        if count < 1:
            raise ValueError("count must be at least 1")
        self._pending.append(_Fault(count, status, path_prefix or API_PREFIX))

    def take(self, path: str) -> _Fault | None:
        """The fault that applies to a request for ``path``, consuming one use of it."""
        for fault in self._pending:
            if path.startswith(fault.path_prefix):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._pending.remove(fault)
                return fault
        return None
