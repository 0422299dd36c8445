"""Command line: ``constantcontact-sandbox`` / ``python -m airflow_provider_constantcontact.sandbox``.

Starts the sandbox, prints its URLs, credentials, seeded ids and a ready-to-use
``AIRFLOW_CONN_CONSTANTCONTACT_DEFAULT``, and serves until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
from collections.abc import Sequence

from airflow_provider_constantcontact.sandbox.account import LIST_NAME_READINGS
from airflow_provider_constantcontact.sandbox.constants import (
    DEFAULT_ACCESS_TOKEN_TTL,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_DAILY_QUOTA,
    DEFAULT_DEVICE_CODE_TTL,
    DEFAULT_DEVICE_POLL_INTERVAL,
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_RATE_LIMIT,
    DEFAULT_REFRESH_TOKEN,
    DEFAULT_TOKEN_RATE_LIMIT,
)
from airflow_provider_constantcontact.sandbox.emulator import ConstantContactSandbox

#: The addresses ``--fill-list`` adds (the same ones to every list it fills).
FILL_EMAIL = "member{n}@example.com"


def _fill_spec(value: str) -> tuple[str, int]:
    """``NAME=COUNT`` of ``--fill-list``."""
    name, sep, count = value.rpartition("=")
    if not sep or not name or not count.isdigit():
        raise argparse.ArgumentTypeError("expected NAME=COUNT, e.g. Newsletter=100000")
    return name, int(count)


def build_parser() -> argparse.ArgumentParser:
    """The command-line flags (one per constructor option)."""
    parser = argparse.ArgumentParser(
        prog="constantcontact-sandbox",
        description="Run a local emulator of the Constant Contact V3 API and its OAuth2 server.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--host", default=DEFAULT_HOST, help="interface to bind")
    add("--port", type=int, default=DEFAULT_PORT, help="port to bind (0 picks a free one)")
    add("--client-id", default=DEFAULT_CLIENT_ID, help="the registered OAuth client id")
    add("--client-secret", default=DEFAULT_CLIENT_SECRET, help="the registered OAuth client secret")
    add("--refresh-token", default=DEFAULT_REFRESH_TOKEN, help="the seeded valid refresh token")
    add(
        "--rotating-refresh-tokens",
        action="store_true",
        help="single-use refresh tokens (each refresh rotates)",
    )
    add(
        "--access-token-ttl",
        type=float,
        default=DEFAULT_ACCESS_TOKEN_TTL,
        help="access token lifetime, seconds",
    )
    add(
        "--rate-limit", type=float, default=DEFAULT_RATE_LIMIT, help="API requests/second per client, 0 = off"
    )
    add("--daily-quota", type=int, default=DEFAULT_DAILY_QUOTA, help="API requests/day per client, 0 = off")
    add(
        "--token-rate-limit",
        type=float,
        default=DEFAULT_TOKEN_RATE_LIMIT,
        help="token requests/second, 0 = off",
    )
    add(
        "--processing-rate",
        type=float,
        default=None,
        help="contacts/second import activities process (default: at once)",
    )
    add(
        "--list",
        dest="lists",
        action="append",
        default=[],
        metavar="NAME",
        help="seed a contact list (repeatable)",
    )
    add(
        "--fill-list",
        dest="fill_lists",
        action="append",
        default=[],
        type=_fill_spec,
        metavar="NAME=COUNT",
        help=f"add COUNT members {FILL_EMAIL.format(n=0)}, {FILL_EMAIL.format(n=1)}, ... to list NAME "
        "(created if not seeded by --list; repeatable)",
    )
    add(
        "--custom-field",
        dest="custom_fields",
        action="append",
        default=[],
        metavar="NAME",
        help="seed a custom field, imported as cf:NAME (repeatable)",
    )
    add(
        "--device-code-ttl", type=float, default=DEFAULT_DEVICE_CODE_TTL, help="device code lifetime, seconds"
    )
    add(
        "--device-poll-interval",
        type=int,
        default=DEFAULT_DEVICE_POLL_INTERVAL,
        help="device flow polling interval, seconds",
    )
    add(
        "--membership-changes-move-updated-at",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="whether list membership changes alone (leaving a list, removals, an import into a list "
        "of an unchanged contact) move a contact's updated_at",
    )
    add(
        "--unsubscribe-removes-memberships",
        action="store_true",
        help="an account-level unsubscribe also ends the contact's list memberships",
    )
    add(
        "--unsubscribe-moves-updated-at",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="whether an unsubscribe moves the contact's updated_at (else only email_address.updated_at)",
    )
    add(
        "--date-filters-inclusive",
        action="store_true",
        help="GET /v3/contacts date filters include their bound (updated_after=T matches a change at T)",
    )
    add(
        "--list-name-reading",
        choices=LIST_NAME_READINGS,
        default="casefold",
        help="how list names are compared for the 409 of POST /v3/contact_lists and the name filter",
    )
    add("--verbose", action="store_true", help="log each request (method, path, status) to stderr")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sandbox until interrupted; returns the exit status."""
    args = build_parser().parse_args(argv)
    sandbox = ConstantContactSandbox(
        args.host,
        args.port,
        client_id=args.client_id,
        client_secret=args.client_secret,
        refresh_token=args.refresh_token,
        rotating_refresh_tokens=args.rotating_refresh_tokens,
        access_token_ttl=args.access_token_ttl,
        rate_limit=args.rate_limit,
        daily_quota=args.daily_quota,
        token_rate_limit=args.token_rate_limit,
        processing_rate=args.processing_rate,
        lists=args.lists,
        custom_fields=args.custom_fields,
        device_code_ttl=args.device_code_ttl,
        device_poll_interval=args.device_poll_interval,
        membership_changes_move_updated_at=args.membership_changes_move_updated_at,
        unsubscribe_removes_memberships=args.unsubscribe_removes_memberships,
        unsubscribe_moves_updated_at=args.unsubscribe_moves_updated_at,
        date_filters_inclusive=args.date_filters_inclusive,
        list_name_reading=args.list_name_reading,
        verbose=args.verbose,
    )
    for name, count in args.fill_lists:
        list_id = sandbox.list_ids.get(name) or sandbox.create_list(name)
        sandbox.add_list_members(list_id, [FILL_EMAIL.format(n=n) for n in range(count)])
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        sandbox.start()
    except OSError as exc:
        print(f"constantcontact-sandbox: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    try:
        lines = [
            f"Constant Contact sandbox running at {sandbox.base_url}",
            f"  API base URL:         {sandbox.api_base_url}",
            f"  Token URL:            {sandbox.token_url}",
            f"  Authorize URL:        {sandbox.authorize_url}",
            f"  Device authorize URL: {sandbox.device_authorize_url}",
            f"  Client id:            {sandbox.client_id}",
            f"  Client secret:        {sandbox.client_secret}",
            f"  Refresh token:        {sandbox.refresh_token}",
        ]
        lines += [
            f"  List id:              {list_id}  {name}" + (f" ({count:,} members)" if count else "")
            for name, list_id in sandbox.list_ids.items()
            for count in [len(sandbox.state.memberships[list_id])]
        ]
        lines += [
            f"  Custom field id:      {field_id}  cf:{name}"
            for name, field_id in sandbox.custom_field_ids.items()
        ]
        lines += [
            "",
            "Point Airflow at it with:",
            f"export AIRFLOW_CONN_CONSTANTCONTACT_DEFAULT={shlex.quote(sandbox.connection_json())}",
            "",
            "Press Ctrl-C to stop.",
        ]
        print("\n".join(lines), flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        sandbox.stop()
    print("Constant Contact sandbox stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
