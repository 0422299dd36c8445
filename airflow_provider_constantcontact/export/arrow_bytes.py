"""Zero-copy access to the bytes behind Arrow string arrays, and slicing-kernel concatenation.

Scanning or joining one buffer is much cheaper than doing the same for many short values, and
``binary_replace_slice`` outruns element-wise joins for adding a prefix or suffix to every value.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

#: A slice position past the end of any value.
END = 2**31 - 1


def value_bytes(values: pa.Array) -> pa.Buffer:
    """The bytes of a (sliced) ``string``/``binary`` or ``large_*`` array's values, back to back.

    Null values take no bytes. Zero-copy: a slice of the array's data buffer.
    """
    width = 8 if pa.types.is_large_string(values.type) or pa.types.is_large_binary(values.type) else 4
    offsets, data = values.buffers()[1], values.buffers()[2]
    if data is None or not len(values):
        return pa.py_buffer(b"")
    first, last = (
        int.from_bytes(offsets[(values.offset + i) * width : (values.offset + i + 1) * width], "little")
        for i in (0, len(values))
    )
    return data.slice(first, last - first)


def as_one_value(values: pa.Array) -> pa.Array:
    """All bytes of ``values`` as a one-element ``large_binary`` array (zero-copy), for one scan."""
    data = value_bytes(values)
    offsets = pa.array([0, data.size], pa.int64()).buffers()[1]
    return pa.Array.from_buffers(pa.large_binary(), 1, [None, offsets, data])


def wrap(values: pa.Array, before: str, after: str = "") -> pa.Array:
    """``before + value + after`` per value (null stays null)."""
    if after:
        values = pc.binary_replace_slice(values, start=END, stop=END, replacement=after)
    return pc.binary_replace_slice(values, start=0, stop=0, replacement=before)
