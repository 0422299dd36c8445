"""Errors raised by the Constant Contact provider.

Every API error carries the HTTP status, method and path of the failed call and the
``error_key`` / ``error_message`` Constant Contact returned, so a task log says what went
wrong without anyone re-running the request. Messages never contain tokens or personal data.
"""

from __future__ import annotations

from airflow_provider_constantcontact._compat import AirflowException


class ConstantContactError(AirflowException):
    """Base class for every error this provider raises."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        method: str | None = None,
        path: str | None = None,
        error_key: str | None = None,
        error_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.method = method
        self.path = path
        self.error_key = error_key
        self.error_message = error_message

    def with_message(self, message: str) -> ConstantContactError:
        """The same error (class, status, method, path, error key and message) told differently."""
        return type(self)(
            message,
            status=self.status,
            method=self.method,
            path=self.path,
            error_key=self.error_key,
            error_message=self.error_message,
        )


class ConstantContactAuthError(ConstantContactError):
    """Authentication or authorisation failed (401/403, or the token endpoint refused)."""


class ConstantContactReauthorizationRequired(ConstantContactAuthError):
    """The refresh token is revoked, expired or already used: a person must consent again."""


class ConstantContactRateLimitError(ConstantContactError):
    """Throttled (429 ``throttled``) past the retry budget, or the daily quota is used up."""


class ConstantContactQuotaExceededError(ConstantContactRateLimitError):
    """The application's daily request quota (429 ``quota_exceeded``) is used up."""


class ConstantContactNotFoundError(ConstantContactError):
    """The requested resource (contact list, activity, ...) does not exist (404)."""


class ConstantContactValidationError(ConstantContactError):
    """Constant Contact rejected the request as invalid (400, 409, 415)."""


class ConstantContactServerError(ConstantContactError):
    """Constant Contact kept failing (5xx or connection errors) after every retry."""


class ConstantContactImportError(ConstantContactError):
    """An import activity failed, or its result contradicts what was sent."""


class SegmentSourceError(ConstantContactError):
    """The segment source cannot be read: no files, an unreadable or non-Parquet file, bad columns."""


class ConstantContactExportError(ConstantContactError):
    """The export stopped to protect the data: the source changed while read, rows unaccounted for."""


class ExportOutputError(ConstantContactError):
    """An output file (rejects, removals, ...) would damage the source or another output, or is unwritable."""


class ExportStateError(ConstantContactError):
    """The export state file cannot be used: another task's (lists, mapping, account), unreadable, newer."""
