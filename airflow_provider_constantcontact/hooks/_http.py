"""HTTP plumbing for the Constant Contact hook: pacing, retries and error parsing.

Kept apart from the hook so that the token client and the API client share one retry policy
and one way of turning an error response into a :class:`ConstantContactError`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, TypedDict

import requests
import tenacity

from airflow_provider_constantcontact.constants import DAILY_REQUEST_QUOTA
from airflow_provider_constantcontact.exceptions import (
    ConstantContactAuthError,
    ConstantContactError,
    ConstantContactNotFoundError,
    ConstantContactQuotaExceededError,
    ConstantContactRateLimitError,
    ConstantContactServerError,
    ConstantContactValidationError,
)
from airflow_provider_constantcontact.utils.redaction import redact_emails

log = logging.getLogger(__name__)

_MAX_ERROR_MESSAGE = 300


# --------------------------------------------------------------------------------------------- pacing
class RequestPacer:
    """Spaces requests evenly: at most ``rate`` a second across every thread of the process.

    Each caller reserves the next free slot under a lock and sleeps outside it, so threads do
    not serialise on the sleep itself.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._next_slot = 0.0

    def wait(self, rate: float) -> None:
        """Block until this caller may send; ``rate`` <= 0 disables pacing."""
        if rate <= 0:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next_slot)
            self._next_slot = slot + 1.0 / rate
        if slot > now:
            time.sleep(slot - now)


_PACERS: dict[str, RequestPacer] = {}
_PACERS_LOCK = threading.Lock()


def pacer_for(key: str) -> RequestPacer:
    """The process-wide pacer for ``key`` (the application's client id, or a token URL)."""
    with _PACERS_LOCK:
        return _PACERS.setdefault(key, RequestPacer())


@dataclass(frozen=True)
class Pacing:
    """How one client spaces its requests: a process-wide pacer held to ``rate`` a second.

    The pacer is shared by every client of the same application (or token URL); the rate is the
    client's own setting, 0 for none.
    """

    pacer: RequestPacer
    rate: float

    @classmethod
    def shared(cls, key: str, rate: float) -> Pacing:
        """Pace at ``rate`` on the process-wide pacer of ``key`` (see :func:`pacer_for`)."""
        return cls(pacer_for(key), rate)

    def wait(self) -> None:
        """Block until the next request may go."""
        self.pacer.wait(self.rate)


#: No pacing at all.
UNPACED = Pacing(RequestPacer(), 0.0)


# ------------------------------------------------------------------------------------- error parsing
def redact_text(text: str) -> str:
    """Remove email addresses and cut ``text`` short: error bodies can echo submitted data."""
    text = redact_emails(text.strip())
    return text if len(text) <= _MAX_ERROR_MESSAGE else text[: _MAX_ERROR_MESSAGE - 3] + "..."


def parse_error_body(response: requests.Response) -> tuple[str | None, str | None]:
    """Return ``(error_key, error_message)`` from any of the three documented error shapes.

    Shapes: a JSON array of ``{"error_key", "error_message"}`` (most errors), a single such
    object (401, 429), and the OAuth ``{"error", "error_description"}``.
    """
    try:
        body: Any = response.json()
    except ValueError:
        text = response.text or ""
        return None, (redact_text(text) or None)
    items = body if isinstance(body, list) else [body]
    keys: list[str] = []
    messages: list[str] = []
    for item in items:
        if not isinstance(item, Mapping):
            continue
        key = item.get("error_key", item.get("error"))
        message = item.get("error_message", item.get("error_description"))
        if key is not None:
            keys.append(str(key))
        if message is not None:
            messages.append(str(message))
    if not keys and not messages:
        return None, redact_text(json.dumps(body)) or None
    return (keys[0] if keys else None), (redact_text("; ".join(messages)) if messages else None)


def quota_reset_text(now: datetime | None = None) -> str:
    """Say when the daily quota resets (00:00 UTC) and how long that is from ``now``."""
    now = now or datetime.now(timezone.utc)
    reset = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    minutes = max(1, int((reset - now).total_seconds() // 60))
    return f"it resets at 00:00 UTC, in {minutes // 60}h {minutes % 60:02d}m"


class _ErrorFields(TypedDict):
    """The keyword arguments every :class:`ConstantContactError` of a response takes."""

    status: int
    method: str
    path: str
    error_key: str | None
    error_message: str | None


def error_for_response(
    response: requests.Response, method: str, path: str, *, hint: str | None = None
) -> ConstantContactError:
    """Build the :class:`ConstantContactError` subclass matching an error response."""
    status = response.status_code
    error_key, error_message = parse_error_body(response)
    detail = ": ".join(p for p in (error_key, error_message) if p) or response.reason or "no detail"
    message = f"Constant Contact {method} {path} failed with HTTP {status} ({detail})"
    kwargs: _ErrorFields = {
        "status": status,
        "method": method,
        "path": path,
        "error_key": error_key,
        "error_message": error_message,
    }
    if status == 429 and error_key == "quota_exceeded":
        return ConstantContactQuotaExceededError(
            f"{message}. The application's daily quota of {DAILY_REQUEST_QUOTA:,} requests is used up; "
            f"{quota_reset_text()}. Retrying before then cannot succeed.",
            **kwargs,
        )
    if status == 429:
        return ConstantContactRateLimitError(message, **kwargs)
    if status == 401:
        return ConstantContactAuthError(
            f"{message}. The access token was refused even after a refresh.", **kwargs
        )
    if status == 403:
        return ConstantContactAuthError(
            f"{message}. The token lacks the contact_data scope, the user lacks the privilege, or the "
            "application is deactivated; re-authorise with `constantcontact-auth` if scopes are missing.",
            **kwargs,
        )
    if status == 404:
        return ConstantContactNotFoundError(f"{message}{'. ' + hint if hint else ''}", **kwargs)
    if status in (400, 409, 415, 422):
        return ConstantContactValidationError(message, **kwargs)
    if status >= 500:
        return ConstantContactServerError(message, **kwargs)
    return ConstantContactError(message, **kwargs)


class _RedactEmails(logging.Filter):
    """Redact email addresses from urllib3's debug lines, which carry request URLs with queries."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "@" in message or "%40" in message:
            record.msg, record.args = redact_emails(message), ()
        return True


_URLLIB3_FILTER = _RedactEmails()


def _install_urllib3_filter() -> None:
    # ``GET /v3/contacts?email=...`` would otherwise put an address in a DEBUG log line.
    logger = logging.getLogger("urllib3.connectionpool")
    if _URLLIB3_FILTER not in logger.filters:
        logger.addFilter(_URLLIB3_FILTER)


# ------------------------------------------------------------------------------------------- retries
@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry transient failures (connection errors, 5xx, throttling)."""

    max_attempts: int = 6
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    jitter: float = 1.0
    max_retry_after: float = 120.0


class _Transient(Exception):
    """Internal: one attempt failed in a way worth retrying; carries the error to surface."""

    def __init__(self, error: ConstantContactError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


def _retry_after_seconds(response: requests.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date), if one was sent."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        from email.utils import parsedate_to_datetime

        return max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
    except (TypeError, ValueError):
        return None


_TRANSIENT_REQUEST_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,  # connection dropped while reading the body
)


class HttpClient:
    """A ``requests.Session`` with timeouts, pacing and tenacity-driven retries.

    Pacing and the retry policy are fixed at construction: :meth:`derive` gives a client that
    shares the session (its connection pool) but paces or retries differently, so no caller ever
    changes a client other code is using.
    """

    def __init__(
        self,
        *,
        timeout: tuple[float, float],
        policy: RetryPolicy,
        user_agent: str,
        pacing: Pacing = UNPACED,
        session: requests.Session | None = None,
    ) -> None:
        _install_urllib3_filter()
        if session is None:
            session = requests.Session()
            session.headers["User-Agent"] = user_agent
            session.headers["Accept"] = "application/json"
        self.session = session
        self.timeout = timeout
        self.policy = policy
        self.pacing = pacing
        self._user_agent = user_agent

    def derive(self, *, pacing: Pacing | None = None, policy: RetryPolicy | None = None) -> HttpClient:
        """A client on the same session and timeout, with other pacing and/or retry policy."""
        return HttpClient(
            timeout=self.timeout,
            policy=self.policy if policy is None else policy,
            user_agent=self._user_agent,
            pacing=self.pacing if pacing is None else pacing,
            session=self.session,
        )

    def close(self) -> None:
        """Release pooled connections (of every client sharing this session)."""
        self.session.close()

    def _wait(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, _Transient) and exc.retry_after is not None:
            return min(exc.retry_after, self.policy.max_retry_after)
        backoff = tenacity.wait_exponential(
            multiplier=self.policy.backoff_initial, max=self.policy.backoff_max
        ) + tenacity.wait_random(0, self.policy.jitter)
        return backoff(retry_state)

    def send(
        self,
        method: str,
        url: str,
        *,
        log_path: str,
        **kwargs: Any,
    ) -> requests.Response:
        """Send one request, retrying transient failures; return any other response as is.

        Connection errors, timeouts, 5xx and 429 ``throttled`` are retried with exponential
        backoff and jitter (or the server's ``Retry-After``). 429 ``quota_exceeded`` raises
        :class:`ConstantContactQuotaExceededError` at once. Retried POSTs are safe for this API:
        JSON imports are upserts keyed by email and membership removals are idempotent.
        """
        attempts = self.policy.max_attempts

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "%s; retrying in %.1f s (attempt %d of %d)",
                getattr(exc, "error", exc),
                state.next_action.sleep if state.next_action else 0.0,
                state.attempt_number,
                attempts,
            )

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Transient),
            stop=tenacity.stop_after_attempt(attempts),
            wait=self._wait,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(self._attempt, method, url, log_path, kwargs)
        except _Transient as exc:
            raise exc.error.with_message(f"{exc.error} (gave up after {attempts} attempts)") from None

    def _attempt(
        self,
        method: str,
        url: str,
        log_path: str,
        kwargs: dict[str, Any],
    ) -> requests.Response:
        self.pacing.wait()
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            if not isinstance(exc, _TRANSIENT_REQUEST_ERRORS):
                raise ConstantContactError(
                    f"Constant Contact {method} {log_path} failed: {type(exc).__name__}",
                    method=method,
                    path=log_path,
                ) from None
            error: ConstantContactError = ConstantContactServerError(
                f"Constant Contact {method} {log_path} failed: {type(exc).__name__} "
                f"(host unreachable, connection dropped or timed out)",
                method=method,
                path=log_path,
            )
            raise _Transient(error) from None
        if response.status_code == 429:
            error = error_for_response(response, method, log_path)
            if isinstance(error, ConstantContactQuotaExceededError):
                raise error
            raise _Transient(error, _retry_after_seconds(response))
        if response.status_code >= 500:
            raise _Transient(error_for_response(response, method, log_path))
        return response
