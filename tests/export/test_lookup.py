"""The bucketed lookups give exactly what pyarrow's one-table lookups give."""

from __future__ import annotations

import random

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from airflow_provider_constantcontact.export import lookup


@pytest.fixture(autouse=True)
def _buckets_even_for_small_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lookup, "SMALL", 4)


def _chunked(array: pa.Array) -> pa.ChunkedArray:
    middle = len(array) // 2
    return pa.chunked_array([array.slice(0, middle), array.slice(middle)], array.type)


@pytest.mark.parametrize("seed", range(20))
def test_lookups_match_pyarrow_on_strings_and_integers(seed: int) -> None:
    rng = random.Random(seed)
    pool = [f"user{i}@example.com" for i in range(150)] + [None, ""]
    values = pa.array([rng.choice(pool) for _ in range(rng.randint(0, 300))], pa.string())
    value_set = pa.array([rng.choice(pool) for _ in range(rng.randint(0, 300))], pa.string())
    expected_index = pc.index_in(values, value_set=value_set).to_pylist()
    assert lookup.index_in(_chunked(values), value_set).to_pylist() == expected_index
    assert lookup.index_in(values, _chunked(value_set)).to_pylist() == expected_index
    assert lookup.is_in(values, value_set).to_pylist() == pc.is_in(values, value_set=value_set).to_pylist()
    assert lookup.has_duplicates(value_set) == (len(set(value_set.to_pylist())) < len(value_set))
    numbers = pa.array([rng.randint(-40, 40) for _ in range(200)], pa.int64())
    number_set = pa.array([rng.randint(-40, 40) for _ in range(100)], pa.int64())
    assert (
        lookup.is_in(numbers, number_set).to_pylist() == pc.is_in(numbers, value_set=number_set).to_pylist()
    )


def test_index_in_gives_the_first_of_equal_values() -> None:
    value_set = pa.array(["b", "a", "c", "a", "b", "d"])
    assert lookup.index_in(pa.array(["a", "b", "x", "d"]), value_set).to_pylist() == [1, 0, None, 5]


def test_positions_mask_marks_the_positions_given() -> None:
    assert lookup.positions_mask(pa.array([4, 0, 2], pa.int64()), 6).to_pylist() == [
        True,
        False,
        True,
        False,
        True,
        False,
    ]
