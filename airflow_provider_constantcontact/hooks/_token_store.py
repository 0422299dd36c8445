"""Where the rotated OAuth2 tokens of a connection persist: the record and its stores.

Why a store: with rotating refresh tokens every refresh kills the previous refresh token, and
a task cannot update its Connection in Airflow 3. The newest refresh token (and the access token
it produced, so concurrent tasks share it) therefore lives in an Airflow Variable named
``constantcontact_<conn_id>_oauth_tokens``. The record is written only once a rotation has been
observed (or when one exists already), so long-lived refresh tokens need no Variable at all.

A record belongs to a *lineage*: the client id and the refresh token of the connection it
started from (stored as a hash, ``origin``). When the connection gets a new refresh token
(re-authorisation) the old record no longer matches and is ignored, then overwritten.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from airflow_provider_constantcontact._compat import (
    get_variable,
    set_variable,
    variable_keys,
)

VARIABLE_PREFIX = "constantcontact_"
VARIABLE_SUFFIX = "_oauth_tokens"


def variable_key(conn_id: str) -> str:
    """Name of the Variable holding a connection's rotated tokens (contains ``token``: masked)."""
    return f"{VARIABLE_PREFIX}{conn_id}{VARIABLE_SUFFIX}"


def lineage_origin(client_id: str, refresh_token: str) -> str:
    """Irreversible id of the token lineage that starts at this client id and refresh token."""
    return hashlib.sha256(f"{client_id}\0{refresh_token}".encode()).hexdigest()[:32]


@dataclass
class TokenRecord:
    """What the store and the process cache hold for one lineage."""

    client_id: str
    origin: str
    refresh_token: str
    access_token: str
    expires_at: float
    obtained_at: float
    scope: str | None = None

    def usable(self, now: float, margin: float) -> bool:
        """Whether the access token is good for longer than the refresh margin.

        The margin is capped at half the token's lifetime so short-lived tokens are not
        refreshed on every call.
        """
        lifetime = max(0.0, self.expires_at - self.obtained_at)
        return now < self.expires_at - min(margin, lifetime / 2)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["version"] = 1
        data["updated_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return data

    @classmethod
    def from_json(cls, data: Any) -> TokenRecord | None:
        """Parse a stored record; None when it is not one of ours."""
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except ValueError:
                return None
        if not isinstance(data, dict):
            return None
        try:
            return cls(
                client_id=str(data["client_id"]),
                origin=str(data["origin"]),
                refresh_token=str(data["refresh_token"]),
                access_token=str(data.get("access_token") or ""),
                expires_at=float(data.get("expires_at") or 0.0),
                obtained_at=float(data.get("obtained_at") or 0.0),
                scope=data.get("scope"),
            )
        except (KeyError, TypeError, ValueError):
            return None


class TokenStore(Protocol):
    """Where rotated tokens persist between processes. Inject one to replace the Variable store."""

    def load(self, client_id: str, origin: str) -> TokenRecord | None:
        """The current record of this lineage, or None."""

    def save(self, record: TokenRecord) -> None:
        """Persist ``record``; raise when that is impossible."""


class MemoryTokenStore:
    """A store in process memory: for tests, or callers that manage persistence themselves."""

    def __init__(self, record: TokenRecord | None = None) -> None:
        self.record = record
        self.saves: list[TokenRecord] = []

    def load(self, client_id: str, origin: str) -> TokenRecord | None:
        rec = self.record
        return rec if rec and rec.client_id == client_id and rec.origin == origin else None

    def save(self, record: TokenRecord) -> None:
        self.record = record
        self.saves.append(record)


class VariableTokenStore:
    """Tokens in the Airflow Variable ``constantcontact_<conn_id>_oauth_tokens``.

    Inside a task or the triggerer it uses ``airflow.sdk.Variable`` (supervisor comms);
    elsewhere ``airflow.models.Variable`` (metadata DB). When this connection id has no
    record of the lineage, records under other connection ids are searched for the same
    lineage: the API server's Test button runs the hook under a random transient connection
    id, and a copied connection shares its refresh token with the original.
    """

    def __init__(self, conn_id: str) -> None:
        self.key = variable_key(conn_id)
        self._write_key = self.key

    # -- backends (which Variable API serves this process is decided in _compat)
    def _get(self, key: str) -> Any:
        return get_variable(key)

    def _set(self, key: str, value: dict[str, Any]) -> None:
        set_variable(
            key,
            value,
            description=(
                "OAuth tokens of a Constant Contact connection (rotating refresh token); managed by the hook"
            ),
        )

    def _other_keys(self) -> list[str]:
        keys = variable_keys(VARIABLE_PREFIX)
        return [k for k in keys if k.endswith(VARIABLE_SUFFIX) and k != self.key]

    # -- TokenStore
    def load(self, client_id: str, origin: str) -> TokenRecord | None:
        record = TokenRecord.from_json(self._get(self.key))
        if record and record.client_id == client_id and record.origin == origin:
            self._write_key = self.key
            return record
        for key in self._other_keys():
            other = TokenRecord.from_json(self._get(key))
            if other and other.client_id == client_id and other.origin == origin:
                self._write_key = key
                return other
        self._write_key = self.key
        return None

    def save(self, record: TokenRecord) -> None:
        self._set(self._write_key, record.to_json())
