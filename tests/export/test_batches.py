"""Unit tests of the byte- and count-limited import bodies."""

from __future__ import annotations

import json
import random

import pyarrow as pa
import pytest

from airflow_provider_constantcontact.export.batches import BodyBatcher, envelope

LIST_IDS = ["6f0f6a8e-0000-4000-8000-000000000001", "6f0f6a8e-0000-4000-8000-000000000002"]


def _contacts(count: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return [
        json.dumps({"email": f"u{i}@example.com", "cf:x": "é" * rng.randrange(0, 60)}, ensure_ascii=False)
        for i in range(count)
    ]


def _greedy_reference(sizes: list[int], max_bytes: int, max_contacts: int) -> list[int]:
    """Contacts per body of a plain-Python greedy packer over exact body sizes."""
    prefix, suffix = envelope(LIST_IDS)
    counts: list[int] = []
    count, size = 0, len(prefix) + len(suffix)
    for item in sizes:
        extra = item + (1 if count else 0)
        if count and (count == max_contacts or size + extra > max_bytes):
            counts.append(count)
            count, size = 0, len(prefix) + len(suffix)
            extra = item
        count += 1
        size += extra
    if count:
        counts.append(count)
    return counts


@pytest.mark.parametrize(("max_bytes", "max_contacts"), [(2_000, 1_000), (10_000, 25), (1_000_000, 40_000)])
def test_bodies_are_exact_within_limits_and_fewest(max_bytes: int, max_contacts: int) -> None:
    contacts = _contacts(700)
    batcher = BodyBatcher(LIST_IDS, max_bytes=max_bytes, max_contacts=max_contacts)
    bodies = []
    for start in range(0, len(contacts), 97):  # chunks that do not line up with the bodies
        bodies += list(batcher.add(pa.array(contacts[start : start + 97])))
    bodies += list(batcher.flush())
    received = []
    for body in bodies:
        assert len(body.body) <= max_bytes
        assert body.contacts <= max_contacts
        payload = json.loads(body.body)
        assert payload["list_ids"] == LIST_IDS
        assert len(payload["import_data"]) == body.contacts
        received += payload["import_data"]
    assert received == [json.loads(text) for text in contacts]
    sizes = [len(text.encode()) for text in contacts]
    assert [body.contacts for body in bodies] == _greedy_reference(sizes, max_bytes, max_contacts)


def test_a_body_can_be_filled_to_the_last_byte() -> None:
    contacts = ['{"email":"a@example.com"}'] * 10
    prefix, suffix = envelope(LIST_IDS)
    exact = len(prefix) + len(suffix) + 10 * len(contacts[0]) + 9
    bodies = list(BodyBatcher(LIST_IDS, max_bytes=exact).add(pa.array(contacts))) + []
    batcher = BodyBatcher(LIST_IDS, max_bytes=exact)
    bodies = list(batcher.add(pa.array(contacts))) + list(batcher.flush())
    assert [len(body.body) for body in bodies] == [exact]
    batcher = BodyBatcher(LIST_IDS, max_bytes=exact - 1)
    bodies = list(batcher.add(pa.array(contacts))) + list(batcher.flush())
    assert [body.contacts for body in bodies] == [9, 1]


def test_a_contact_larger_than_a_body_is_an_error() -> None:
    batcher = BodyBatcher(LIST_IDS, max_bytes=200)
    with pytest.raises(ValueError, match="more than fits"):
        list(batcher.add(pa.array(['{"email":"a@example.com","cf:x":"' + "x" * 300 + '"}'])))
