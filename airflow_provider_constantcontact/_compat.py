"""The provider's only uses of Airflow internals, each with the reason it exists.

Like the official providers' ``version_compat.py``: everything here reaches past the public Task
SDK (``airflow.sdk``) or differs between Airflow lines, so an Airflow upgrade has one module to
re-check. Checked on Airflow 3.0.6, 3.1.8, 3.2.2 and 3.3.2 (task SDK 1.0.6 / 1.1.8 / 1.2.2 /
1.3.2). Airflow is imported inside the functions (and the version-dependent names on first use,
through the module's ``__getattr__``): the CLI imports this module where Airflow may not even be
configured, and a task must not load the ORM for nothing. Nothing here fails at import time; a
feature an Airflow line lacks degrades with one log line (:func:`_log_degraded_once`).

Names that moved between lines (``from airflow_provider_constantcontact._compat import ...``):

- ``BaseHook``: ``airflow.sdk`` from 3.1; ``airflow.hooks.base`` on 3.0.
- ``conf``: ``airflow.sdk`` from 3.2; ``airflow.configuration`` on 3.0 and 3.1.
- ``AirflowSensorTimeout``: ``airflow.sdk.exceptions`` from 3.2; ``airflow.exceptions`` before.
- ``AirflowException``: ``airflow.sdk.exceptions`` from 3.1; ``airflow.exceptions`` on 3.0.

Shims:

- :func:`aget_connection`: ``BaseHook.aget_connection`` from 3.1; on 3.0 the blocking lookup
  through asgiref's ``sync_to_async``, which keeps the triggerer's supervisor channel on its loop.
- :func:`run_blocking`: blocking work of a trigger (HTTP, Variables) off the event loop. The
  triggerer's supervisor channel accepts calls from other threads from 3.2; on 3.0 and 3.1 it
  must be reached through asgiref's ``sync_to_async``, or a Variable read in the thread fails
  with "attached to a different loop".
- :func:`reschedule_safe_context`: on Airflow 3.0 (Task SDK 1.0) ``ti.get_first_reschedule_date``
  returns the API's ISO string instead of a datetime (its client builds the response with
  ``model_construct``, which skips validation), so every sensor in ``mode="reschedule"`` fails on
  its second try with ``datetime - str`` in ``BaseSensorOperator.execute``. The context handed to
  it gets a ``ti`` whose ``get_first_reschedule_date`` returns an aware datetime. 3.1+ validates.
- :func:`legacy_connection_form_widgets`: the connection form's extra fields as Airflow 3.0 and
  3.1 read them from the hook (WTForms fields, which their API server swaps for
  its own stand-ins; 3.2+ reads ``conn-fields`` from provider info and never calls them). On 3.0
  the API server needs ``wtforms`` installed to call them at all (it comes with the FAB provider):
  without it, Airflow logs that the UI widgets are missing and the form has only the standard
  fields and the Extra JSON.

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

import asyncio
import importlib
import logging
import sys
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from airflow.sdk import BaseHook as BaseHook
    from airflow.sdk import Connection, Context
    from airflow.sdk import conf as conf
    from airflow.sdk.exceptions import AirflowException as AirflowException
    from airflow.sdk.exceptions import AirflowSensorTimeout as AirflowSensorTimeout

    from airflow_provider_constantcontact.connection_form import ExtraField

__all__ = [
    "AirflowException",
    "AirflowSensorTimeout",
    "BaseHook",
    "aget_connection",
    "check_connections_readable",
    "conf",
    "get_variable",
    "in_task_sdk_context",
    "legacy_connection_form_widgets",
    "reschedule_safe_context",
    "save_connection",
    "set_variable",
    "variable_keys",
]

log = logging.getLogger(__name__)

_TASK_RUNNER_MODULE = "airflow.sdk.execution_time.task_runner"

#: name -> where it lives, newest location first.
_MOVED_NAMES: dict[str, tuple[str, ...]] = {
    "BaseHook": ("airflow.sdk", "airflow.hooks.base"),
    "conf": ("airflow.sdk", "airflow.configuration"),
    "AirflowSensorTimeout": ("airflow.sdk.exceptions", "airflow.exceptions"),
    "AirflowException": ("airflow.sdk.exceptions", "airflow.exceptions"),
}
_degraded: set[str] = set()
_T = TypeVar("_T")


def __getattr__(name: str) -> Any:
    """Resolve a name that moved between Airflow lines from wherever this Airflow keeps it."""
    if name not in _MOVED_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    for module_name in _MOVED_NAMES[name]:
        value = getattr(importlib.import_module(module_name), name, None)
        if value is not None:
            globals()[name] = value
            return value
    raise ImportError(f"No module of this Airflow has {name} (looked in {', '.join(_MOVED_NAMES[name])})")


def _log_degraded_once(feature: str, message: str) -> None:
    """Say once per process that ``feature`` is reduced on this Airflow, and how."""
    if feature not in _degraded:
        _degraded.add(feature)
        log.warning("Constant Contact provider on Airflow %s: %s", _airflow_version(), message)


def _airflow_version() -> str:
    from airflow import __version__

    return str(__version__)


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
            _log_degraded_once(
                "variable_keys",
                "a task cannot list Variables before Airflow 3.3, so it finds rotated tokens only "
                "under its own connection id (not those saved by the Test button or a copy)",
            )
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


async def aget_connection(conn_id: str) -> Connection:
    """Fetch connection ``conn_id`` from async code (a trigger) without blocking the event loop."""
    hook_class: type[BaseHook] = __getattr__("BaseHook")
    if hasattr(hook_class, "aget_connection"):
        return await hook_class.aget_connection(conn_id)
    from asgiref.sync import sync_to_async  # Airflow 3.0: its triggerer's own way

    return await sync_to_async(hook_class.get_connection)(conn_id)


async def run_blocking(func: Callable[..., _T], *args: Any) -> _T:
    """Run blocking ``func(*args)`` in a worker thread from a trigger, supervisor channel usable."""
    from airflow import __version__

    if tuple(int(part) for part in __version__.split(".")[:2]) >= (3, 2):
        return await asyncio.to_thread(func, *args)
    from asgiref.sync import sync_to_async

    return await sync_to_async(func, thread_sensitive=False)(*args)


# ------------------------------------------------------------------------- sensors (3.0)
def as_aware_datetime(value: datetime | str | None) -> datetime | None:
    """``value`` as a timezone-aware datetime (an ISO 8601 string is parsed; naive means UTC)."""
    if value is None:
        return None
    if isinstance(value, str):
        # Python 3.10's fromisoformat does not read a trailing "Z", which the API sends.
        value = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


class _RescheduleDateTaskInstance:
    """A task instance whose ``get_first_reschedule_date`` returns a datetime (Airflow 3.0)."""

    def __init__(self, ti: Any) -> None:
        self._ti = ti

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ti, name)

    def get_first_reschedule_date(self, context: Any) -> datetime | None:
        return as_aware_datetime(self._ti.get_first_reschedule_date(context))


def reschedule_safe_context(context: Context) -> Context:
    """``context`` for ``BaseSensorOperator.execute`` in reschedule mode, on any Airflow line.

    Airflow 3.0's ``get_first_reschedule_date`` returns a string (see the module docstring); the
    returned copy's ``ti`` converts it. On 3.1+ the context is returned unchanged.
    """
    ti = context.get("ti")
    if ti is None or not _airflow_before(3, 1):
        return context
    fixed = _RescheduleDateTaskInstance(ti)
    # A proxy, not a RuntimeTaskInstance: every other attribute is the task instance's own.
    return {**context, "ti": fixed, "task_instance": fixed}  # type: ignore[typeddict-item]  # proxy


def _airflow_before(major: int, minor: int) -> bool:
    return tuple(int(part) for part in _airflow_version().split(".")[:2]) < (major, minor)


# --------------------------------------------------------------------- connection form (3.0, 3.1)
def legacy_connection_form_widgets(fields: Iterable[ExtraField]) -> dict[str, Any]:
    """The extra fields as the WTForms fields Airflow 3.0/3.1 turn into the UI's form.

    Their API server replaces ``wtforms.StringField``/``IntegerField``/``PasswordField`` with
    stand-ins that turn label, description and default into the same JSON Schema that 3.2+ builds
    from ``conn-fields``. They have no float field: a number is an integer field there (a
    fractional rate goes into the Extra JSON).
    """
    from wtforms import IntegerField, PasswordField, StringField

    kinds = {"text": StringField, "password": PasswordField, "number": IntegerField}
    return {
        field.name: kinds[field.kind](field.label, description=field.description, default=field.default)
        for field in fields
    }
