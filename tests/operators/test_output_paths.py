"""Output locations on object storage (issue 18 §2): normalised URLs, compared like local real paths.

In process, with a ``memory://`` store registered the way providers register ``s3://``; the local
spellings are tested through ``airflow dags test`` in tests/system/test_export_probe_outputs.py.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_constantcontact.exceptions import ExportOutputError
from tests.operators.conftest import imports_in_log, run
from tests.operators.test_constantcontact import memory_storage  # noqa: F401  (fixture)

MAPPING = {"email": "Email"}


@pytest.fixture
def stored_segment(memory_storage: Any) -> str:  # noqa: F811
    from airflow.sdk import ObjectStoragePath

    with ObjectStoragePath("memory://crm/segments/part-0.parquet").open("wb") as handle:
        pq.write_table(pa.table({"Email": ["a@example.com", "bad"]}), handle)
    return "memory://crm/segments/"


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ({"rejects_path": "memory://crm/out/../segments/rejects.parquet"}, "lies inside the segment source"),
        ({"rejects_path": "memory://crm/segments/./deep/rejects.parquet"}, "lies inside the segment source"),
        (
            {
                "rejects_path": "memory://crm/out/run.parquet",
                "removals_path": "memory://crm/out/./run.parquet",
            },
            "name the same place",
        ),
        (
            {
                "rejects_path": "memory://crm/out/run.parquet",
                "removals_path": "memory://crm/out/run.parquet/",
            },
            "name the same place",
        ),
    ],
)
def test_object_storage_outputs_are_compared_by_normalised_url(
    make_export: Any, constantcontact_sandbox: Any, stored_segment: str, outputs: dict, message: str
) -> None:
    from airflow.sdk import ObjectStoragePath

    operator = make_export(
        source=stored_segment, field_mapping=MAPPING, sync_mode="mirror", max_removal_ratio=1
    )
    for name, value in outputs.items():
        setattr(operator, name, value)

    with pytest.raises(ExportOutputError, match=message):
        run(operator)

    assert imports_in_log(constantcontact_sandbox) == []
    assert [p.name for p in ObjectStoragePath("memory://crm/segments/").iterdir()] == ["part-0.parquet"]


def test_an_output_beside_the_source_sharing_its_prefix_is_written(
    make_export: Any, constantcontact_sandbox: Any, stored_segment: str
) -> None:
    from airflow.sdk import ObjectStoragePath

    summary, _ = run(
        make_export(
            source=stored_segment, field_mapping=MAPPING, rejects_path="memory://crm/segments-rejects/"
        )
    )

    assert summary["rejects_path"] == "memory://crm/segments-rejects/rejects.parquet"
    assert summary["rejects_written"] == 1
    assert [p.name for p in ObjectStoragePath("memory://crm/segments-rejects/").iterdir()] == [
        "rejects.parquet"
    ]
