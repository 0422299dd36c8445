"""What a route sees of an HTTP request, and the request checks every /v3 route shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airflow_provider_constantcontact.sandbox.errors import bad_request, error_list
from airflow_provider_constantcontact.sandbox.imports import parse_json_body


@dataclass
class Request:
    """What a route sees of an HTTP request."""

    method: str
    path: str
    query: dict[str, str]
    headers: Any
    body: bytes
    client_id: str = ""


def int_param(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    """The integer query parameter ``name`` (``default`` when absent); 400 outside low..high."""
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"{name} must be an integer.", "query.invalid") from None
    if not low <= value <= high:
        raise bad_request(f"{name} must be between {low} and {high}.", "query.invalid")
    return value


def require_json(request: Request) -> Any:
    """The JSON body of a request; 415 without a JSON Content-Type, 400 when not JSON."""
    content_type = request.headers.get("Content-Type") or ""
    if "json" not in content_type.lower():
        raise error_list(415, "unsupported_media_type", "Content-Type must be application/json.")
    return parse_json_body(request.body)
