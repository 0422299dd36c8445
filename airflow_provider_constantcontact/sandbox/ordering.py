"""``IndexOrder``: the contact indexes of one list, sorted, for O(page) cursor paging.

A list's members are kept as a set of contact keys (for membership tests and counts) and,
next to it, as this sorted collection of contact indexes, so ``GET /v3/contacts?lists=<id>``
can resume after the last index of the previous page with a bisection instead of copying or
scanning a million members. Values are kept in blocks of about ``BLOCK`` sorted ints (the
idea of ``sortedcontainers.SortedList``, standard library only): finding a position is two
bisections, inserting or removing one value moves at most ``2 * BLOCK`` items.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterator
from itertools import chain

#: Values a block holds after a split or a bulk load (a block splits past twice this).
BLOCK = 1000


class IndexOrder:
    """A sorted set of ints in blocks; callers only ``add`` values not yet present."""

    __slots__ = ("_blocks", "_maxes", "_size")

    def __init__(self) -> None:
        self._blocks: list[list[int]] = []
        self._maxes: list[int] = []
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[int]:
        return chain.from_iterable(self._blocks)

    def add(self, values: list[int]) -> None:
        """Insert ``values`` (none of them present yet, any order)."""
        if not values:
            return
        values = sorted(values)
        self._size += len(values)
        if not self._maxes or values[0] > self._maxes[-1]:
            self._append(values)  # the usual case: new contacts have the highest indexes
        elif len(values) > max(64, (self._size - len(values)) // 16):
            merged = list(chain.from_iterable(self._blocks))
            merged += values
            merged.sort()
            self._blocks, self._maxes = [], []
            self._append(merged)
        else:
            for value in values:
                self._insert(value)

    def _append(self, values: list[int]) -> None:
        """Append sorted values that are all above every value held."""
        blocks, maxes = self._blocks, self._maxes
        start = 0
        if blocks and len(blocks[-1]) < BLOCK:
            start = BLOCK - len(blocks[-1])
            blocks[-1].extend(values[:start])
            maxes[-1] = blocks[-1][-1]
        for i in range(start, len(values), BLOCK):
            block = values[i : i + BLOCK]
            blocks.append(block)
            maxes.append(block[-1])

    def _insert(self, value: int) -> None:
        blocks, maxes = self._blocks, self._maxes
        i = min(bisect_left(maxes, value), len(maxes) - 1)
        block = blocks[i]
        insort(block, value)
        maxes[i] = block[-1]
        if len(block) > 2 * BLOCK:
            blocks[i : i + 1] = [block[:BLOCK], block[BLOCK:]]
            maxes[i : i + 1] = [block[BLOCK - 1], block[-1]]

    def remove(self, value: int) -> None:
        """Remove ``value`` if present."""
        blocks, maxes = self._blocks, self._maxes
        i = bisect_left(maxes, value)
        if i == len(maxes):
            return
        block = blocks[i]
        j = bisect_left(block, value)
        if j == len(block) or block[j] != value:
            return
        del block[j]
        self._size -= 1
        if block:
            maxes[i] = block[-1]
        else:
            del blocks[i], maxes[i]

    def after(self, value: int) -> Iterator[int]:
        """The values above ``value``, ascending (do not change the order while iterating)."""
        blocks = self._blocks
        i = bisect_right(self._maxes, value)
        if i == len(blocks):
            return
        block = blocks[i]
        yield from block[bisect_right(block, value) :]
        for k in range(i + 1, len(blocks)):
            yield from blocks[k]
