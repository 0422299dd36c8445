"""The connection the helper produces: as JSON, as an `airflow connections add` command, or saved."""

from __future__ import annotations

import copy
import json
import os
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from airflow_provider_constantcontact.cli._oauth import AuthCliError
from airflow_provider_constantcontact.constants import DEFAULT_API_BASE_URL

CONN_TYPE = "constantcontact"
MASK = "***"
FORMATS = ("json", "airflow-cli")
#: Prefix of the environment variables Airflow reads connections from, before the metadata DB.
CONN_ENV_PREFIX = "AIRFLOW_CONN_"


def build_connection(
    *,
    client_id: str,
    client_secret: str | None,
    refresh_token: str,
    api_base_url: str | None,
    token_url: str,
    max_requests_per_second: float | None = None,
) -> dict[str, Any]:
    """The connection in Airflow's JSON form (what AIRFLOW_CONN_<ID> and --conn-json accept)."""
    extra: dict[str, Any] = {
        "refresh_token": refresh_token,
        "api_base_url": api_base_url or DEFAULT_API_BASE_URL,
        "token_url": token_url,
    }
    if max_requests_per_second is not None:
        extra["max_requests_per_second"] = max_requests_per_second
    return {"conn_type": CONN_TYPE, "login": client_id, "password": client_secret, "extra": extra}


def masked(connection: dict[str, Any]) -> dict[str, Any]:
    """A copy with the client secret and the refresh token replaced by ``***``."""
    result = copy.deepcopy(connection)
    if result["password"]:
        result["password"] = MASK
    result["extra"]["refresh_token"] = MASK
    return result


def render(connection: dict[str, Any], fmt: str, conn_id: str) -> str:
    """The connection as JSON (for AIRFLOW_CONN_<ID>) or as an `airflow connections add` command."""
    as_json = json.dumps(connection)
    if fmt == "json":
        return as_json
    if fmt == "airflow-cli":
        return f"airflow connections add {shlex.quote(conn_id)} --conn-json {shlex.quote(as_json)}"
    raise ValueError(f"unknown output format {fmt!r}")


def write_private_file(path: Path, text: str) -> None:
    """Write ``text`` to a file only the current user can read (it holds secrets)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        # O_CREAT's mode applies to a new file only: restrict an existing one before the secrets go in.
        os.fchmod(fd, 0o600)
        handle.write(text + "\n")


def shadowing_env_var(conn_id: str) -> str | None:
    """The ``AIRFLOW_CONN_<ID>`` variable set in this environment, which Airflow reads before the DB."""
    name = CONN_ENV_PREFIX + conn_id.upper()
    return name if name in os.environ else None


def check_can_save() -> None:
    """Fail before the consent, not after it, when --save cannot reach a migrated metadata DB."""
    with _metadata_db("read the connections of"):
        from airflow_provider_constantcontact._compat import check_connections_readable

        check_connections_readable()


@contextmanager
def _metadata_db(action: str) -> Iterator[None]:
    """Turn any failure to use Airflow's metadata DB into one actionable AuthCliError."""
    try:
        yield
    except ImportError as exc:
        raise AuthCliError(f"--save needs Airflow installed in this environment ({exc}).") from None
    except Exception as exc:
        # A DB driver error (`orig`) names the problem ("no such table: connection") without the
        # statement's parameters, which hold the (encrypted) secrets.
        orig = getattr(exc, "orig", None)
        reason = f"{type(exc).__name__}: {orig}" if orig else type(exc).__name__
        raise AuthCliError(
            f"Could not {action} the Airflow metadata DB ({reason}). Run this where Airflow's "
            "configuration (AIRFLOW_HOME, the database URL and the Fernet key) is that of the "
            "deployment and the DB is migrated (`airflow db migrate`), or use --output instead."
        ) from None


def save_connection(conn_id: str, connection: dict[str, Any]) -> bool:
    """Create or update ``conn_id`` in the Airflow metadata DB (ORM); True when it was created.

    Needs the Airflow configuration of the deployment (AIRFLOW_HOME or
    AIRFLOW__DATABASE__SQL_ALCHEMY_CONN and the same Fernet key) in this process's environment.
    """
    extra = json.dumps(connection["extra"])
    with _metadata_db(f"save connection {conn_id!r} to"):
        from airflow_provider_constantcontact._compat import save_connection as save_to_metadata_db

        return save_to_metadata_db(
            conn_id,
            conn_type=connection["conn_type"],
            login=connection["login"],
            password=connection["password"],
            extra=extra,
        )
    raise AssertionError("unreachable")  # _metadata_db re-raises every failure
