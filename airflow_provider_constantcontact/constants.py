"""Facts about the Constant Contact V3 API that this provider depends on, stated once.

Airflow-free, so the hook, the export, the CLI and the provider metadata all import from here.
Sources: ``../shared/constant-contact-api.md`` (the developer guide and the API's schema). The
sandbox states the service's behaviour on its own (``sandbox/constants.py``): it is the test
oracle, so a wrong fact here cannot pass by being shared with it.
"""

from __future__ import annotations

# ---------------------------------------------------------------------------------- endpoints
DEFAULT_API_BASE_URL = "https://api.cc.email/v3"
DEFAULT_OAUTH_BASE_URL = "https://authz.constantcontact.com/oauth2/default/v1"
DEFAULT_AUTHORIZE_URL = f"{DEFAULT_OAUTH_BASE_URL}/authorize"
DEFAULT_TOKEN_URL = f"{DEFAULT_OAUTH_BASE_URL}/token"
DEFAULT_DEVICE_AUTHORIZE_URL = f"{DEFAULT_OAUTH_BASE_URL}/device/authorize"

#: Scopes the provider needs: contact_data (lists, contacts, activities, custom fields) and
#: offline_access (without it no refresh token is returned).
REQUIRED_SCOPES = ("contact_data", "offline_access")

# ----------------------------------------------------------------------------- request limits
#: Requests a second per application key, and a day (the day resets at 00:00 UTC).
MAX_REQUESTS_PER_SECOND = 4.0
DAILY_REQUEST_QUOTA = 10_000

#: A JSON import body over 4 MB is not rejected: only its first 4 MB are imported and the rest
#: is silently dropped. 4,000,000 bytes is the safe reading of "4 MB".
MAX_IMPORT_BODY_BYTES = 4_000_000
MAX_IMPORT_CONTACTS = 40_000
#: List ids in one import or removal request.
MAX_LISTS_PER_REQUEST = 50
#: Contact ids in one ``remove_list_memberships`` request.
MAX_CONTACT_IDS_PER_REMOVAL = 500
#: List ids the contacts listing (``GET /contacts?lists=``) takes at once.
MAX_LISTS_PER_CONTACTS_QUERY = 25
#: A contact list id is a UUID (as in the list's URL in the web app), in either case.
LIST_ID_PATTERN = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
#: Largest page of the contact lists, contacts and activities listings; of custom fields.
MAX_PAGE_SIZE = 500
MAX_CUSTOM_FIELDS_PAGE_SIZE = 100

# ------------------------------------------------------------------------ import field limits
EMAIL_MAX_LENGTH = 50
SHORT_FIELD_MAX_LENGTH = 50
LONG_FIELD_MAX_LENGTH = 255
CUSTOM_FIELD_PREFIX = "cf:"
MAX_CUSTOM_FIELDS_PER_CONTACT = 25

# --------------------------------------------------------------------------------- activities
TERMINAL_ACTIVITY_STATES = frozenset({"completed", "cancelled", "failed", "timed_out"})
#: Days an activity record can be read (``GET /activities[/{id}]``); older ones are a 404.
#: V2 documented 14; 10 is the shorter, safe figure (docs/api-semantics.md).
ACTIVITY_RECORD_DAYS = 10
FAILED_ACTIVITY_STATES = frozenset({"cancelled", "failed", "timed_out"})
