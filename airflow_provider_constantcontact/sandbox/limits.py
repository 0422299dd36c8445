"""Request-rate limits: a per-client token bucket and a daily quota that resets at 00:00 UTC."""

from __future__ import annotations

import time
from datetime import datetime, timezone


class TokenBucket:
    """Allows ``rate`` requests a second per key with a burst of ``max(1, rate)``; 0 disables it.

    Not thread-safe on its own: callers hold the sandbox lock.
    """

    def __init__(self, rate: float) -> None:
        self.rate = float(rate)
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str) -> bool:
        """Take one request from ``key``'s bucket; False when it is empty."""
        if self.rate <= 0:
            return True
        capacity = max(1.0, self.rate)
        now = time.monotonic()
        tokens, last = self._buckets.get(key, (capacity, now))
        tokens = min(capacity, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1.0, now)
        return True


def _utc_day() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d")


class DailyQuota:
    """Counts requests per key and UTC day; ``limit`` 0 disables it (``exhaust`` still works)."""

    def __init__(self, limit: int) -> None:
        self.limit = int(limit)
        self._day = _utc_day()
        self._counts: dict[str, int] = {}
        self._exhausted = False

    def _roll(self) -> None:
        day = _utc_day()
        if day != self._day:
            self._day, self._counts, self._exhausted = day, {}, False

    def allow(self, key: str) -> bool:
        """Count one request for ``key``; False once the day's quota is spent."""
        self._roll()
        if self._exhausted:
            return False
        count = self._counts.get(key, 0)
        if self.limit > 0 and count >= self.limit:
            return False
        self._counts[key] = count + 1
        return True

    def used(self, key: str) -> int:
        """Requests counted today for ``key``."""
        self._roll()
        return self._counts.get(key, 0)

    def exhaust(self) -> None:
        """Spend the quota of every client until the next UTC day."""
        self._roll()
        self._exhausted = True
