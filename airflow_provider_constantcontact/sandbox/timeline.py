"""``Timeline``: the sandbox clock and the index of contact changes by time.

The clock is the wall clock plus an offset that ``advance_time`` moves on, never backwards,
in whole milliseconds (the API's timestamps show milliseconds, so a stored time is exactly the
time a client reads). Each time a contact's ``updated_at`` moves, the change is appended to a
log of (time, contact index) kept in time order, in two compact arrays (16 bytes a change, not
a Python object), so ``GET /v3/contacts?updated_after=T`` finds the contacts changed since T
by bisection, in O(changes since T) whatever the size of the account: a quiet day costs
nothing even with a million contacts.
"""

from __future__ import annotations

import math
import time
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable

#: The log is rebuilt from the records once it holds this many times more entries than there
#: are contacts (plus a floor), so repeated updates of the same contacts do not grow it forever.
_COMPACT_FACTOR = 2
_COMPACT_FLOOR = 100_000


class Timeline:
    """The sandbox clock and the time-ordered log of contact changes."""

    __slots__ = ("_cache", "_indexes", "_last", "_times", "offset")

    def __init__(self) -> None:
        #: Seconds the sandbox clock is ahead of the wall clock (``advance``).
        self.offset = 0.0
        self._last = 0.0
        self._times = array("d")
        self._indexes = array("q")
        #: The last ``changed_since`` answer and what it was computed from (paging asks again
        #: for every page: the answer stands until the log changes).
        self._cache: tuple[tuple[float, bool, int, int], list[int]] | None = None

    def now(self) -> float:
        """The sandbox time (epoch seconds, whole milliseconds), never earlier than before."""
        current = math.floor((time.time() + self.offset) * 1000) / 1000
        if current < self._last:
            current = self._last
        self._last = current
        return current

    def advance(self, seconds: float) -> float:
        """Move the clock ``seconds`` (>= 0) forward; returns the new time."""
        if not seconds >= 0:
            raise ValueError("the sandbox clock only moves forward: give seconds >= 0")
        self.offset += seconds
        return self.now()

    def record(self, index: int, when: float) -> None:
        """Contact ``index`` changed at ``when`` (a time from ``now``)."""
        self._times.append(when)
        self._indexes.append(index)

    def record_many(self, indexes: Iterable[int], when: float) -> None:
        """These contacts changed at ``when``."""
        before = len(self._indexes)
        self._indexes.extend(indexes)
        self._times.extend(array("d", [when]) * (len(self._indexes) - before))

    def changed_since(self, since: float, inclusive: bool) -> list[int]:
        """Indexes of the contacts changed after ``since`` (at or after when ``inclusive``),
        each once, ascending (shared: do not change the list)."""
        key = (since, inclusive, len(self._times), id(self._times))
        if self._cache is None or self._cache[0] != key:
            cut = bisect_left if inclusive else bisect_right
            self._cache = key, sorted(set(self._indexes[cut(self._times, since) :]))
        return self._cache[1]

    def count_since(self, since: float, inclusive: bool) -> int:
        """Log entries after ``since``: an upper bound of ``len(changed_since(...))``, O(log n)."""
        cut = bisect_left if inclusive else bisect_right
        return len(self._times) - cut(self._times, since)

    def needs_compaction(self, contacts: int) -> bool:
        """Whether the log has grown well past one entry a contact."""
        return len(self._times) > _COMPACT_FACTOR * contacts + _COMPACT_FLOOR

    def rebuild(self, updated: Iterable[tuple[float, int]]) -> None:
        """Replace the log by one entry a contact: (its ``updated_at``, its index)."""
        entries = sorted(updated)
        self._times = array("d", (when for when, _ in entries))
        self._indexes = array("q", (index for _, index in entries))
