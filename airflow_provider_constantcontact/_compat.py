"""The provider's only uses of Airflow internals, each with the reason it exists.

Like the official providers' ``version_compat.py``: everything here reaches past the public Task
SDK (``airflow.sdk``), so an Airflow upgrade has one module to re-check. Checked on Airflow 3.2.2
and 3.3.2 (task SDK 1.2.2 / 1.3.2). Airflow is imported inside the functions: the CLI imports
this module where Airflow may not even be configured, and a task must not load the ORM for
nothing.

Shims:

- :func:`in_task_sdk_context` reads the Task SDK's private ``SUPERVISOR_COMMS``. Outside a task
  (API server's Test button, CLI, scripts) ``airflow.sdk.Variable.get(key, default=None)``
  silently returns the default even when the key exists, and ``Variable.set`` fails; no public
  API says which side of that line a process is on.
- :func:`get_variable`, :func:`set_variable` and :func:`variable_keys` use the public
  ``airflow.sdk.Variable`` inside a task or triggerer, and otherwise the ORM model
  ``airflow.models.Variable`` with a metadata DB session: the hook persists rotated refresh tokens
  from both places. ``Variable.keys`` (listing from a task) exists from Airflow 3.3 only; on 3.2
  a task cannot list keys and gets none.
- :func:`check_connections_readable` and :func:`save_connection` write a Connection through the
  ORM (``airflow.models.connection.Connection``): ``constantcontact-auth --save`` runs outside
  any task, and Airflow 3 has no public API to create a connection from Python there.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = [
    "check_connections_readable",
    "get_variable",
    "in_task_sdk_context",
    "save_connection",
    "set_variable",
    "variable_keys",
]

_TASK_RUNNER_MODULE = "airflow.sdk.execution_time.task_runner"


# ------------------------------------------------------------------------------------- context
def in_task_sdk_context() -> bool:
    """True inside a task, DAG-processor or triggerer process that talks to a supervisor.

    There Variables must go through ``airflow.sdk.Variable``; elsewhere the SDK silently returns
    defaults on read, so the ORM model is used. The module is only looked up, never imported: a
    process that never ran a task has no supervisor channel.
    """
    runner = sys.modules.get(_TASK_RUNNER_MODULE)
    return getattr(runner, "SUPERVISOR_COMMS", None) is not None


# ----------------------------------------------------------------------------------- variables
def get_variable(key: str) -> Any:
    """The JSON value of Variable ``key``, or None when it does not exist."""
    if in_task_sdk_context():
        from airflow.sdk import Variable

        return Variable.get(key, default=None, deserialize_json=True)
    from airflow.models import Variable as ORMVariable

    return ORMVariable.get(key, default_var=None, deserialize_json=True)


def set_variable(key: str, value: Any, *, description: str) -> None:
    """Create or update Variable ``key`` with ``value`` serialised as JSON."""
    if in_task_sdk_context():
        from airflow.sdk import Variable

        Variable.set(key, value, description=description, serialize_json=True)
        return
    from airflow.models import Variable as ORMVariable

    ORMVariable.set(key, value, description=description, serialize_json=True)


def variable_keys(prefix: str) -> list[str]:
    """Keys of the Variables starting with ``prefix`` (none from a task on Airflow < 3.3)."""
    if in_task_sdk_context():
        from airflow.sdk import Variable

        if not hasattr(Variable, "keys"):  # Airflow < 3.3 cannot list keys from a task
            return []
        return list(Variable.keys(prefix=prefix))
    from airflow.models import Variable as ORMVariable
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return list(session.scalars(select(ORMVariable.key).where(ORMVariable.key.startswith(prefix))))


# --------------------------------------------------------------------------------- connections
def check_connections_readable() -> None:
    """Read one row of the metadata DB's connection table; raise whatever stops that."""
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        session.execute(select(Connection.conn_id).limit(1)).all()


def save_connection(
    conn_id: str, *, conn_type: str, login: str | None, password: str | None, extra: str
) -> bool:
    """Create or update ``conn_id`` in the metadata DB; True when it was created.

    An update clears host, schema and port, so the row holds exactly the fields given.
    """
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        existing = session.scalar(select(Connection).where(Connection.conn_id == conn_id))
        if existing is None:
            session.add(
                Connection(conn_id=conn_id, conn_type=conn_type, login=login, password=password, extra=extra)
            )
            return True
        existing.conn_type = conn_type
        existing.login = login
        existing.password = password
        existing.extra = extra
        existing.host = existing.schema = existing.port = None
        return False
