"""The checks behind ``ConstantContactHook.test_connection`` (the UI's Test button).

Credentials, refresh token, granted scopes and API base URL, in the order a user would fix
them; each failure is answered with a message saying what to change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_provider_constantcontact.constants import DEFAULT_API_BASE_URL, REQUIRED_SCOPES
from airflow_provider_constantcontact.exceptions import (
    ConstantContactAuthError,
    ConstantContactError,
    ConstantContactNotFoundError,
    ConstantContactReauthorizationRequired,
)

if TYPE_CHECKING:
    from airflow_provider_constantcontact.hooks.constantcontact import ConstantContactHook


def check_connection(hook: ConstantContactHook) -> tuple[bool, str]:
    """``(ok, message)`` for the hook's connection, checked by a fail-fast twin of the hook."""
    # The Test button waits for the answer: check with a twin of this hook that fails fast
    # (at most 2 attempts a request), so this hook keeps its full retry budget.
    probe = _twin(hook, max_attempts=min(2, hook.retry_policy.max_attempts))
    try:
        return _run_checks(probe)
    finally:
        probe.close()


def _twin(hook: ConstantContactHook, *, max_attempts: int) -> ConstantContactHook:
    """A new hook on the same connection, token store and settings but ``max_attempts``."""
    policy = hook.retry_policy
    return type(hook)(
        hook.constantcontact_conn_id,
        # The connection if already fetched; else the twin fetches it, inside its own checks.
        connection=hook.__dict__.get("connection", hook._connection),
        token_store=hook._token_store,
        timeout=hook.timeout,
        max_attempts=max_attempts,
        backoff_initial=policy.backoff_initial,
        backoff_max=policy.backoff_max,
        backoff_jitter=policy.jitter,
        refresh_margin=hook.refresh_margin,
    )


def _run_checks(hook: ConstantContactHook) -> tuple[bool, str]:
    """The checks, in the order a user would fix them."""
    try:
        tokens = hook.tokens
    except ConstantContactAuthError as exc:
        return False, str(exc)
    except Exception as exc:
        return (
            False,
            f"Cannot read connection '{hook.constantcontact_conn_id}': {type(exc).__name__}: {exc}",
        )
    try:
        # Always ask the token endpoint: a cached or stored access token would hide wrong
        # client credentials typed into the form.
        tokens.access_token(force_refresh=True)
    except ConstantContactReauthorizationRequired as exc:
        return False, f"Refresh token revoked, expired or already used. {exc}"
    except ConstantContactAuthError as exc:
        return False, str(exc)
    except ConstantContactError as exc:
        if exc.status is None:
            return False, f"Cannot reach the token URL {hook.token_url}: {exc}"
        return False, f"Token URL {hook.token_url} failed: {exc}"
    record = tokens.cached_record()
    scope = tokens.last_scope or (record.scope if record else None)
    if scope is not None:
        missing = [s for s in REQUIRED_SCOPES if s not in scope.split()]
        if missing:
            return False, (
                f"The authorisation lacks the scope(s) {', '.join(missing)} (granted: {scope}). "
                "Re-authorise with `constantcontact-auth`, which requests contact_data and "
                "offline_access."
            )
    try:
        body = hook.request("GET", "/contact_lists", params={"limit": 1})
    except ConstantContactNotFoundError:
        return False, (
            f"The API base URL {hook.api_base_url} does not look like the Constant Contact V3 API "
            f"(GET /contact_lists answered 404); the default is {DEFAULT_API_BASE_URL}."
        )
    except ConstantContactAuthError as exc:
        if exc.status == 403:
            return False, (
                "The API refused access (HTTP 403): the authorisation lacks the contact_data scope, the "
                "user lacks the privilege, or the application is deactivated. Re-authorise with "
                f"`constantcontact-auth`. ({exc.error_key or 'forbidden'})"
            )
        return False, str(exc)
    except ConstantContactError as exc:
        if exc.status is None:
            return False, f"Cannot reach the API at {hook.api_base_url}: {exc}"
        return False, f"The API at {hook.api_base_url} failed: {exc}"
    if not isinstance(body, dict) or "lists" not in body:
        return False, (
            f"The API base URL {hook.api_base_url} answered, but not like the Constant Contact V3 API; "
            f"the default is {DEFAULT_API_BASE_URL}."
        )
    return (
        True,
        f"Connected to Constant Contact at {hook.api_base_url}: token valid, contact lists readable.",
    )
