"""Exact lookups among a million keys in bounded memory: one hash bucket at a time.

``pc.index_in`` and ``pc.is_in`` build a hash table of the whole value set: for a million emails
about 100 MB at its peak (50 MB for a million int64 hashes), on top of both sides. Equal keys
fall in the same bucket, so splitting both sides into :data:`BUCKETS` buckets and looking up
bucket by bucket gives the same answer with tables a sixteenth the size. Strings are bucketed by
their hash, integers (email hashes already) by their low bits; the comparison stays exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeAlias

import pyarrow as pa
import pyarrow.compute as pc

from airflow_provider_constantcontact.export.dedup import email_hashes

#: A column of keys: one array or a chunked one (a table's column).
Keys: TypeAlias = "pa.Array | pa.ChunkedArray"

BUCKETS = 16
#: Up to this many values in the set, one plain lookup: its table is small anyway.
SMALL = 65_536


def one_array(keys: Keys) -> pa.Array:
    """``keys`` as one array (a chunked one combined)."""
    return keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys


def _bucket_of(keys: Keys) -> pa.Array:
    """The bucket (uint8) of each key: low bits of an integer, of a string's hash (nulls: of ``""``)."""
    if pa.types.is_integer(keys.type):
        return one_array(pc.cast(pc.bit_wise_and(pc.cast(keys, pa.int64()), BUCKETS - 1), pa.uint8()))
    # A slice at a time: only the buckets are kept, not a million 8-byte hashes.
    return pa.concat_arrays(
        [
            pc.cast(pc.bit_wise_and(email_hashes(part), BUCKETS - 1), pa.uint8())
            for chunk in _chunks(pc.fill_null(keys, ""))
            for part in (chunk.slice(start, SMALL) for start in range(0, len(chunk), SMALL))
        ]
        or [pa.array([], pa.uint8())]
    )


def _chunks(keys: Keys) -> list[pa.Array]:
    return keys.chunks if isinstance(keys, pa.ChunkedArray) else [keys]


def _buckets(values: Keys, value_set: Keys) -> Iterator[tuple[pa.Array, pa.Array, pa.Array, pa.Array]]:
    """Per bucket: the mask of ``values`` in it, those values, the positions of ``value_set`` in
    it and those keys of ``value_set``."""
    value_buckets, set_buckets = _bucket_of(values), _bucket_of(value_set)
    for bucket in range(BUCKETS):
        code = pa.scalar(bucket, pa.uint8())
        mask = pc.equal(value_buckets, code)
        positions = pc.indices_nonzero(pc.equal(set_buckets, code))
        yield mask, one_array(values.filter(mask)), positions, one_array(value_set.take(positions))


def index_in(values: Keys, value_set: Keys) -> pa.Array:
    """``pc.index_in(values, value_set=value_set)``: per value, the position of its first equal in
    ``value_set`` (int32, as pyarrow's), null when absent."""
    if not len(values) or not len(value_set):  # no table to build at all
        return pa.nulls(len(values), pa.int32())
    if len(value_set) <= SMALL:
        return one_array(pc.index_in(values, value_set=one_array(value_set)))
    found = pa.nulls(len(values), pa.int32())
    for mask, mine, positions, theirs in _buckets(values, value_set):
        local = pc.index_in(mine, value_set=theirs)
        # replace_with_mask fills the masked slots in order: the bucket's values, in order.
        found = pc.replace_with_mask(found, mask, pc.cast(positions.take(local), pa.int32()))
    return found


def is_in(values: Keys, value_set: Keys) -> pa.Array:
    """``pc.is_in(values, value_set=value_set)`` (boolean, never null)."""
    if not len(values) or not len(value_set):
        return pa.repeat(pa.scalar(False), len(values))
    if len(value_set) <= SMALL:
        return one_array(pc.is_in(values, value_set=one_array(value_set)))
    found = pa.repeat(pa.scalar(False), len(values))
    for mask, mine, _, theirs in _buckets(values, value_set):
        found = pc.replace_with_mask(found, mask, pc.is_in(mine, value_set=theirs))
    return found


def has_duplicates(keys: Keys) -> bool:
    """Whether some key occurs more than once (equal keys share a bucket)."""
    if len(keys) <= SMALL:
        return bool(pc.count_distinct(keys, mode="all").as_py() < len(keys))
    buckets = _bucket_of(keys)
    for bucket in range(BUCKETS):
        mine = keys.filter(pc.equal(buckets, pa.scalar(bucket, pa.uint8())))
        if pc.count_distinct(mine, mode="all").as_py() < len(mine):
            return True
    return False


def positions_mask(positions: Keys, length: int) -> pa.Array:
    """A boolean array of ``length``, true at each of ``positions`` (no hash table of them)."""
    marks = bytearray(length)
    flat = one_array(positions)
    for start in range(0, len(flat), SMALL):
        for position in flat.slice(start, SMALL).to_pylist():
            marks[position] = 1
    return pc.cast(pa.Array.from_buffers(pa.uint8(), length, [None, pa.py_buffer(marks)]), pa.bool_())
