"""Remove email addresses from text this provider logs or raises: the one place that does it.

Error bodies, activity errors and urllib3's debug lines (request URLs with ``?email=...``) can
echo the addresses of the contacts being imported, and those must never reach a log.
"""

from __future__ import annotations

import re

__all__ = ["EMAIL_PLACEHOLDER", "redact_emails"]

EMAIL_PLACEHOLDER = "<email>"

# Local part: RFC 5322 "atext" and dots, minus the characters that delimit it in the text this
# provider sees: ``/ ? = &`` (a URL query such as ``?email=a.b@x.org`` keeps everything but the
# address), quotes and brackets. An apostrophe may stand inside (``o'brien@x.org``) but not first,
# so a quoted address (``'jane@x.org'``) keeps its opening quote. ``\w`` takes non-ASCII letters.
_LOCAL = r"[\w!#$%*+^`{|}~-][\w!#$%'*+^`{|}~.-]*"
# The "@", or "%40" in a URL-encoded query string.
_AT = r"(?:@|%40)"
# Domain: labels (letters, digits, inner hyphens) and a top-level label that starts with a letter,
# so ``user@localhost`` or ``5@10.00`` are not taken for addresses.
_LABEL = r"[^\W_](?:[\w-]*[^\W_])?"
_TLD = r"[^\W\d_](?:[\w-]*[^\W_])"
EMAIL_RE = re.compile(rf"{_LOCAL}{_AT}(?:{_LABEL}\.)+{_TLD}")


def redact_emails(text: object) -> str:
    """``text`` (made a string) with every email address replaced by ``<email>``."""
    return EMAIL_RE.sub(EMAIL_PLACEHOLDER, str(text))
