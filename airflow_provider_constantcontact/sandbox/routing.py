"""What a route sees of an HTTP request, and the request checks every /v3 route shares."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_provider_constantcontact.sandbox.errors import bad_request, error_list, not_found
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


#: (method, path pattern, handler taking the request and the pattern's groups).
Route = tuple[str, "re.Pattern[str]", Callable[..., tuple[int, Any]]]


def dispatch(routes: Sequence[Route], request: Request) -> tuple[int, Any]:
    """Run the route matching the request's method and path; 405 when only the method differs, else 404."""
    path = request.path.rstrip("/") or "/"
    allowed = False
    for method, pattern, handler in routes:
        match = pattern.fullmatch(path)
        if match:
            allowed = True
            if method == request.method:
                return handler(request, *match.groups())
    if allowed:
        raise error_list(405, "method_not_allowed", "Method Not Allowed")
    raise not_found("The requested resource does not exist.")
