"""``plan_only``, the deprecated ``dry_run=`` argument, and Airflow's own ``BaseOperator.dry_run()``.

The argument used to be called ``dry_run``, which replaced Airflow's ``dry_run()`` method with a
bool on every export task. DAGs written with ``dry_run=`` keep working until 0.2.0, with a
warning that says what to write instead.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from airflow.exceptions import AirflowProviderDeprecationWarning
from airflow.sdk import BaseOperator
from structlog.testing import capture_logs

from airflow_provider_constantcontact.operators.constantcontact import ConstantContactSegmentExportOperator
from airflow_provider_constantcontact.sandbox import ConstantContactSandbox
from tests.operators.conftest import imports_in_log, run, write_parquet
from tests.system.dag_runs import EXAMPLE_DAGS
from tests.utils.test_templated import render

MANUAL = "constantcontact_manual_export"


def logged_messages(operator: ConstantContactSegmentExportOperator) -> list[str]:
    """What ``operator.dry_run()`` (Airflow's method) logs."""
    with capture_logs() as logs:
        operator.dry_run()
    return [entry["event"] for entry in logs]


@pytest.mark.skipif(
    not hasattr(BaseOperator, "dry_run"), reason="the Task SDK of Airflow 3.0 has no BaseOperator.dry_run()"
)
def test_base_operator_dry_run_is_callable_on_the_example_dags_tasks() -> None:
    from tests.airflow_compat import DagBag

    bag = DagBag(dag_folder=str(EXAMPLE_DAGS / "constantcontact_manual_export.py"))
    assert bag.import_errors == {}
    dag = bag.dags[MANUAL]
    for task_id in ("export_segment", "plan_only_export"):
        operator = dag.get_task(task_id)
        messages = logged_messages(operator)
        assert messages[0] == "Dry run"
        assert "Rendering template for source" in messages
        assert "{{ params.source }}" in messages

    # Rendered with the DAG's form values (native rendering, as the DAG asks), then dry_run() again.
    operator = dag.get_task("plan_only_export")
    params = {name: dag.params.get_param(name).value for name in dag.params} | {"source": "/data/vip.parquet"}
    operator.render_template_fields({"params": params})
    assert operator.plan_only is True
    assert operator.source == "/data/vip.parquet"
    messages = logged_messages(operator)
    assert messages[messages.index("Rendering template for source") + 1] == "/data/vip.parquet"


@pytest.mark.parametrize("native", [True, False])
def test_plan_only_is_templated(native: bool) -> None:
    operator = ConstantContactSegmentExportOperator(
        task_id="export",
        source="s.parquet",
        list_ids="id",
        field_mapping={"email": "E"},
        plan_only=render("{{ params.plan }}", native, params={"plan": True}),
    )
    assert "plan_only" in operator.template_fields
    assert operator._settings().plan_only is True
    assert "dry_run" not in vars(operator)  # Airflow's method is not shadowed


def test_dry_run_argument_still_works_with_a_warning_saying_what_to_write(
    make_export: Any, constantcontact_sandbox: ConstantContactSandbox, newsletter: str, tmp_path: Path
) -> None:
    source = write_parquet(tmp_path / "s.parquet", {"Email": ["ann@example.com", "bob@example.com"]})
    with pytest.warns(AirflowProviderDeprecationWarning, match=r"write plan_only=True instead") as caught:
        operator = make_export(source=str(source), field_mapping={"email": "Email"}, dry_run=True)
    assert issubclass(caught[0].category, DeprecationWarning)
    assert "dry_run" not in vars(operator)  # Airflow's method is not shadowed
    assert operator.plan_only is True

    summary, _ = run(operator)
    assert summary["plan_only"] is True
    assert summary["dry_run"] is True
    assert summary["contacts_submitted"] == 2
    assert imports_in_log(constantcontact_sandbox) == []
    assert constantcontact_sandbox.list_members(newsletter) == {}


def test_dry_run_false_is_a_real_export(
    make_export: Any, constantcontact_sandbox: ConstantContactSandbox, newsletter: str, tmp_path: Path
) -> None:
    source = write_parquet(tmp_path / "s.parquet", {"Email": ["ann@example.com"]})
    with pytest.warns(AirflowProviderDeprecationWarning, match=r"write plan_only='\{\{ False \}\}'"):
        operator = make_export(source=str(source), field_mapping={"email": "Email"}, dry_run="{{ False }}")
    operator.render_template_fields({})
    summary, _ = run(operator)
    assert summary["plan_only"] is False
    assert len(imports_in_log(constantcontact_sandbox)) == 1


def test_plan_only_and_dry_run_together_are_refused() -> None:
    with pytest.raises(ValueError, match="plan_only and its deprecated name dry_run are both given"):
        ConstantContactSegmentExportOperator(
            task_id="export",
            source="s.parquet",
            list_ids="id",
            field_mapping={"email": "E"},
            plan_only=True,
            dry_run=True,
        )


def test_dag_file_with_dry_run_gets_the_warning_at_its_own_line(tmp_path: Path) -> None:
    from tests.airflow_compat import DagBag

    dag_file = tmp_path / "old_style.py"
    dag_file.write_text(
        textwrap.dedent(
            """
            import pendulum
            from airflow.sdk import DAG

            from airflow_provider_constantcontact.operators.constantcontact import (
                ConstantContactSegmentExportOperator,
            )

            with DAG("old_style", schedule=None, start_date=pendulum.datetime(2025, 1, 1)):
                ConstantContactSegmentExportOperator(
                    task_id="export", source="s.parquet", list_ids="id", field_mapping={"email": "E"},
                    dry_run=True,
                )
            """
        )
    )
    # DagBag re-emits what it captured (as a UserWarning).
    with pytest.warns(Warning, match="write plan_only=True instead"):
        bag = DagBag(dag_folder=str(dag_file))
    assert bag.import_errors == {}
    assert bag.dags["old_style"].get_task("export").plan_only is True
    (captured,) = bag.captured_warnings[str(dag_file)]
    assert captured.startswith(f"{dag_file}:10: ")
    assert "AirflowProviderDeprecationWarning" in captured
    assert "write plan_only=True instead" in captured
