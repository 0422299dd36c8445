"""A table spilled to a temporary file comes back the same, and the file goes."""

from __future__ import annotations

import os

import pyarrow as pa

from airflow_provider_constantcontact.export.spill import SpillableTable


def _contacts() -> pa.Table:
    return pa.table(
        {
            "row": pa.array([0, 2, 5], pa.uint32()),
            "email": pa.array(["a@example.com", "b@example.com", "c@example.com"]),
            "fingerprint": pa.array([1, -2, 3], pa.int64()),
        }
    )


def test_a_spilled_table_is_read_back_unchanged_and_its_file_removed() -> None:
    spilled = SpillableTable(_contacts())
    spilled.spill()
    directory = spilled._directory
    assert directory is not None
    assert os.listdir(directory)  # on disk, not in memory
    assert spilled._table is None
    assert spilled.take().equals(_contacts())
    assert not os.path.exists(directory)


def test_a_table_never_spilled_is_handed_over_as_it_is() -> None:
    table = _contacts()
    kept = SpillableTable(table)
    assert kept.take() is table
    assert kept.take().num_rows == 0  # handed over once: nothing held any more
    kept.close()
