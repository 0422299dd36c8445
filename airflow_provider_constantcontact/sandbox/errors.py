"""Error responses in the shapes the real service uses."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """Raised by a route to answer with ``status`` and a JSON ``body``."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


def error_list(status: int, error_key: str, error_message: str) -> ApiError:
    """The usual API error: a JSON array of ``{error_key, error_message}``."""
    return ApiError(status, [{"error_key": error_key, "error_message": error_message}])


def error_object(status: int, error_key: str, error_message: str) -> ApiError:
    """The single-object error the API sends for 401 and 429."""
    return ApiError(status, {"error_key": error_key, "error_message": error_message})


def oauth_error(status: int, error: str, description: str, headers: dict[str, str] | None = None) -> ApiError:
    """An OAuth error: ``{error, error_description}``."""
    return ApiError(status, {"error": error, "error_description": description}, headers)


def oauth_too_many_requests(reset_at: int) -> ApiError:
    """429 of the token endpoint's own rate limit; ``reset_at`` is the epoch second it resets."""
    return oauth_error(
        429,
        "too_many_requests",
        "API call exceeded rate limit due to too many requests.",
        {"X-Rate-Limit-Reset": str(reset_at)},
    )


def unauthorized() -> ApiError:
    """401 for a missing, unknown or expired access token."""
    return error_object(401, "unauthorized", "Unauthorized")


def throttled() -> ApiError:
    """429 for more requests a second than allowed."""
    return error_object(429, "throttled", "Too Many Requests")


def quota_exceeded() -> ApiError:
    """429 once the daily request quota is spent."""
    return error_object(429, "quota_exceeded", "Limit Exceeded")


def bad_request(message: str, error_key: str = "bad_request") -> ApiError:
    """400 with a single message in the array shape."""
    return error_list(400, error_key, message)


def reject_unknown_properties(body: dict[str, Any], known: frozenset[str], error_key: str) -> None:
    """400 (array shape) naming the first top-level property of ``body`` not in ``known``.

    Only the property name is echoed (cut to 60 characters), never a value."""
    unknown = body.keys() - known
    if unknown:
        raise bad_request(f"Unknown property '{sorted(unknown)[0][:60]}'.", error_key)


def not_found(message: str) -> ApiError:
    """404 in the array shape."""
    return error_list(404, "not_found", message)


STATUS_ERRORS: dict[int, tuple[str, str]] = {
    400: ("bad_request", "Bad Request"),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not_found", "Not Found"),
    409: ("conflict", "Conflict"),
    415: ("unsupported_media_type", "Unsupported Media Type"),
    429: ("throttled", "Too Many Requests"),
    500: ("server_error", "Internal Server Error"),
    502: ("bad_gateway", "Bad Gateway"),
    503: ("service_unavailable", "Service Unavailable"),
    504: ("gateway_timeout", "Gateway Timeout"),
}


def for_status(status: int) -> ApiError:
    """A canned error for an injected fault, in the shape the real API uses for that status."""
    key, message = STATUS_ERRORS.get(status, ("error", "Error"))
    if status in (401, 429):
        return error_object(status, key, message)
    return error_list(status, key, message)


def oauth_for_status(status: int, reset_at: int) -> ApiError:
    """A canned error for an injected fault on the OAuth server, in its ``{error,
    error_description}`` shape: 429 as its own rate limit, 503 ``temporarily_unavailable``,
    anything else ``server_error`` (the RFC 6749 codes for an unavailable or failing server)."""
    if status == 429:
        return oauth_too_many_requests(reset_at)
    if status == 503:
        return oauth_error(
            503, "temporarily_unavailable", "The authorization server is temporarily unavailable."
        )
    return oauth_error(status, "server_error", "The authorization server encountered an unexpected error.")
