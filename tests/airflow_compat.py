"""Airflow names the tests use that moved between Airflow 3 lines, resolved for the one installed.

The provider's own code resolves its names in ``airflow_provider_constantcontact._compat``; these
are the extra ones only tests touch (exceptions a task raises, the secrets masker, the DAG bag,
the object storage registry).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from airflow import __version__ as AIRFLOW_VERSION
from packaging.version import Version

#: (major, minor) of the installed Airflow, for tests of behaviour that differs by line.
AIRFLOW = Version(AIRFLOW_VERSION).release[:2]
#: Query of a REST API XCom read that returns the value itself. Airflow 3.0 deserializes only with
#: ``[api] enable_xcom_deserialize_support``; its XCom values are plain JSON there anyway.
XCOM_VALUE_PARAMS: dict[str, bool] = {} if AIRFLOW < (3, 1) else {"deserialize": True}


def _first(name: str, *modules: str) -> Any:
    for module_name in modules:
        try:
            value = getattr(importlib.import_module(module_name), name, None)
        except ImportError:
            continue
        if value is not None:
            return value
    raise ImportError(f"{name} is in none of {modules}")


def _exception(name: str) -> type[BaseException]:
    """From ``airflow.sdk.exceptions`` (3.2+) or ``airflow.exceptions`` (3.0, 3.1)."""
    return _first(name, "airflow.sdk.exceptions", "airflow.exceptions")


TaskDeferred = _exception("TaskDeferred")
AirflowRescheduleException = _exception("AirflowRescheduleException")
AirflowSensorTimeout = _exception("AirflowSensorTimeout")
redact: Callable[..., Any] = _first(
    "redact", "airflow.sdk._shared.secrets_masker", "airflow.sdk.execution_time.secrets_masker"
)
DagBag: Any = _first("DagBag", "airflow.dag_processing.dagbag", "airflow.models.dagbag")


def object_storage_registry() -> dict[str, Callable[..., Any]]:
    """Airflow's scheme -> filesystem factory table (``airflow.sdk.io.fs``; ``airflow.io`` on 3.0)."""
    registered_filesystems = _first("_register_filesystems", "airflow.sdk.io.fs", "airflow.io")
    return registered_filesystems()


def without_masker_echo(output: str) -> str:
    """``airflow dags test`` output without Airflow 3.0's debug echo of its task-to-supervisor messages.

    Airflow 3.0's supervisor logs the messages a task sends it at debug level, values included,
    and ``dags test`` prints them: ``MaskSecret`` with each connection's password and extras and
    the tokens the hook registers, ``PutVariable`` with the token record. Those lines are
    Airflow's (3.1+ omits the values); everything else must stay clean.
    """
    if AIRFLOW >= (3, 1):
        return output
    echo = ("MaskSecret(", "Sending request", "Received message from task runner")
    return "\n".join(line for line in output.splitlines() if not any(part in line for part in echo))
