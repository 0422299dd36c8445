"""Defaults and limits of the emulated Constant Contact V3 API, in one place."""

from __future__ import annotations

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_CLIENT_ID = "sandbox-client-id"
DEFAULT_CLIENT_SECRET = "sandbox-client-secret"
DEFAULT_REFRESH_TOKEN = "sandbox-refresh-token"
DEFAULT_SCOPES = ("contact_data", "account_read", "offline_access")
DEFAULT_ACCESS_TOKEN_TTL = 86400
DEFAULT_RATE_LIMIT = 4.0
DEFAULT_DAILY_QUOTA = 10000
DEFAULT_TOKEN_RATE_LIMIT = 1.0
DEFAULT_DEVICE_CODE_TTL = 600
DEFAULT_DEVICE_POLL_INTERVAL = 5

KNOWN_SCOPES = frozenset(
    {"contact_data", "account_read", "account_update", "campaign_data", "offline_access", "openid", "profile"}
)

API_PREFIX = "/v3"
OAUTH_PREFIX = "/oauth2/default/v1"

MAX_IMPORT_BYTES = 4 * 1024 * 1024
MAX_IMPORT_CONTACTS = 40_000
MAX_LIST_IDS = 50
MAX_CUSTOM_FIELDS_PER_CONTACT = 25
MAX_LISTS = 1000
MAX_CUSTOM_FIELDS = 100
MAX_REMOVE_CONTACT_IDS = 500
#: ``GET /v3/contacts``: list ids ``lists`` takes, and the largest ``limit``.
MAX_QUERY_LISTS = 25
MAX_CONTACTS_PAGE = 500

SHORT_FIELD_LIMIT = 50
LONG_FIELD_LIMIT = 255

_ADDRESS_PREFIXES = ("", "home_", "work_", "other_")
_PHONES = ("phone", "home_phone", "work_phone", "mobile_phone", "other_phone", "fax", "sms_number")
_SHORT = ("email", "first_name", "last_name", "job_title", "company_name", "anniversary")
_SHORT_ADDRESS = ("city", "state", "zip", "country")
_STREETS = ("street", "street2")

#: Import contact properties (other than ``cf:<name>``) mapped to their maximum string length.
IMPORT_FIELD_LIMITS: dict[str, int] = {
    **dict.fromkeys(_SHORT, SHORT_FIELD_LIMIT),
    **dict.fromkeys(_PHONES, SHORT_FIELD_LIMIT),
    **{p + f: SHORT_FIELD_LIMIT for p in _ADDRESS_PREFIXES for f in _SHORT_ADDRESS},
    **{p + f: LONG_FIELD_LIMIT for p in _ADDRESS_PREFIXES for f in _STREETS},
}
#: Import contact properties that hold integers rather than strings.
IMPORT_INT_FIELDS: dict[str, tuple[int, int]] = {"birthday_month": (1, 12), "birthday_day": (1, 31)}

#: Seconds an activity record is kept: older ones are gone from GET /v3/activities[/{id}].
ACTIVITY_LIFETIME = 10 * 86400

ACTIVITY_STATES = ("initialized", "processing", "completed", "cancelled", "failed", "timed_out")
#: The states ``fail_next_activity`` can make the next import activity end in.
FAILED_ACTIVITY_STATES = ("failed", "cancelled", "timed_out")
CONTACT_STATUSES = (
    "all",
    "active",
    "deleted",
    "not_set",
    "pending_confirmation",
    "temp_hold",
    "unsubscribed",
)
