"""IndexOrder, the sorted member indexes behind the contacts listing's O(page) paging."""

from __future__ import annotations

import random

import pytest

from airflow_provider_constantcontact.sandbox.ordering import BLOCK, IndexOrder


@pytest.mark.parametrize("seed", range(5))
def test_random_adds_and_removes_match_a_sorted_set(seed):
    rng = random.Random(seed)
    order, model = IndexOrder(), set()
    order.add(list(range(0, 3 * BLOCK, 2)))  # bulk append
    model.update(range(0, 3 * BLOCK, 2))
    for _ in range(300):
        op = rng.random()
        if op < 0.4:  # a few values anywhere (one by one)
            values = list({rng.randrange(6 * BLOCK) for _ in range(rng.randrange(1, 20))} - model)
        elif op < 0.5:  # many values anywhere (merge and re-block)
            values = list({rng.randrange(6 * BLOCK) for _ in range(BLOCK)} - model)
        elif op < 0.6:  # new highest values (append)
            top = max(model, default=-1)
            values = list(range(top + 1, top + 1 + rng.randrange(1, 2 * BLOCK)))
        else:
            values = []
            for value in rng.sample(sorted(model), min(len(model), rng.randrange(1, 50))):
                order.remove(value)
                model.discard(value)
            order.remove(-5)  # absent values are ignored
        order.add(values)
        model.update(values)
        assert len(order) == len(model)
        start = rng.randrange(-1, 6 * BLOCK)
        assert list(order.after(start)) == sorted(v for v in model if v > start)
    assert list(order) == sorted(model)


def test_blocks_split_and_empty_blocks_go():
    order = IndexOrder()
    order.add(list(range(0, 4 * BLOCK, 2)))
    order.add(list(range(1, 2 * BLOCK, 2)))  # a BLOCK of inserts into the first blocks
    assert list(order) == sorted([*range(0, 4 * BLOCK, 2), *range(1, 2 * BLOCK, 2)])
    for value in range(0, 4 * BLOCK):
        order.remove(value)
    assert len(order) == 0
    assert list(order.after(-1)) == []
    order.add([7])
    assert list(order.after(6)) == [7]
