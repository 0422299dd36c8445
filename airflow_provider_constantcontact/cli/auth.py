"""`constantcontact-auth`: obtain the refresh token of a Constant Contact connection, once.

Constant Contact has no client-credentials flow: an account admin must consent in a browser.
This helper runs that consent (authorization code with PKCE through a localhost redirect, or the
device flow for machines without a browser) and turns the answer into an Airflow connection,
printed as JSON or as an `airflow connections add` command, or saved into the metadata DB.
See docs/connection-setup.md.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from airflow_provider_constantcontact.cli._device import run_device
from airflow_provider_constantcontact.cli._oauth import (
    DEFAULT_SCOPES,
    EXIT_USAGE,
    AuthCliError,
    OAuthClient,
    oauth_urls,
    require_refresh_token,
)
from airflow_provider_constantcontact.cli._output import (
    FORMATS,
    build_connection,
    check_can_save,
    masked,
    render,
    save_connection,
    shadowing_env_var,
    write_private_file,
)
from airflow_provider_constantcontact.cli._pkce import DEFAULT_PORT, run_pkce
from airflow_provider_constantcontact.constants import DEFAULT_API_BASE_URL, DEFAULT_OAUTH_BASE_URL

CLIENT_ID_ENV = "CONSTANTCONTACT_CLIENT_ID"
CLIENT_SECRET_ENV = "CONSTANTCONTACT_CLIENT_SECRET"
DEFAULT_CONN_ID = "constantcontact_default"
DEFAULT_PKCE_TIMEOUT = 300.0

EPILOG = """\
exit codes: 0 success, 1 failure, 2 usage, 3 consent denied, 4 wrong client ID or secret
(invalid_client), 5 timed out or device code expired, 6 no refresh token (offline_access not
granted), 7 redirect port in use.

examples:
  constantcontact-auth pkce --client-id API_KEY --save
  constantcontact-auth device --client-id API_KEY --output airflow-cli --show-secrets
  constantcontact-auth pkce --client-id API_KEY --output-file conn.json   # secrets to a 0600 file
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: one sub-command per OAuth flow, sharing the connection options."""
    common = argparse.ArgumentParser(add_help=False)
    app = common.add_argument_group("application")
    app.add_argument(
        "--client-id",
        default=os.environ.get(CLIENT_ID_ENV),
        help=f"API key (client ID) of your application (default: ${CLIENT_ID_ENV})",
    )
    app.add_argument(
        "--client-secret",
        help=f"client secret; better: ${CLIENT_SECRET_ENV} or the prompt (a flag shows in `ps`)",
    )
    app.add_argument(
        "--public-client",
        action="store_true",
        help="the application has no client secret (Constant Contact's PKCE-flow and device-flow "
        "application types): send the client ID in the token requests instead",
    )
    app.add_argument(
        "--scopes",
        default=DEFAULT_SCOPES,
        help=f"space-separated scopes to request (default: {DEFAULT_SCOPES!r}; add account_read if wanted)",
    )
    urls = common.add_argument_group(
        "endpoints (defaults: Constant Contact; point them at a sandbox to test)"
    )
    urls.add_argument(
        "--oauth-base-url",
        help=f"root of the OAuth2 endpoints /authorize, /token, /device/authorize "
        f"(default: {DEFAULT_OAUTH_BASE_URL})",
    )
    urls.add_argument(
        "--token-url", help="token endpoint (overrides --oauth-base-url); stored in the connection"
    )
    urls.add_argument(
        "--api-base-url", help=f"API root stored in the connection (default: {DEFAULT_API_BASE_URL})"
    )
    conn = common.add_argument_group("connection output")
    conn.add_argument(
        "--conn-id", default=DEFAULT_CONN_ID, help=f"connection id (default: {DEFAULT_CONN_ID})"
    )
    conn.add_argument(
        "--max-requests-per-second",
        type=float,
        help="stored in the connection's extra (default: not set, the hook paces at 4/s)",
    )
    conn.add_argument(
        "--output",
        choices=FORMATS,
        default="json",
        help="print the connection as JSON for AIRFLOW_CONN_<CONN_ID> (default) or as an "
        "`airflow connections add` command",
    )
    conn.add_argument(
        "--output-file", type=Path, help="also write that output, secrets included, to this file (mode 600)"
    )
    conn.add_argument(
        "--save",
        action="store_true",
        help="create or update the connection in the Airflow metadata DB of this environment",
    )
    conn.add_argument(
        "--show-secrets",
        action="store_true",
        help="print the client secret and refresh token instead of ***",
    )
    common.add_argument("--timeout", type=float, help="seconds to wait for the consent")

    parser = argparse.ArgumentParser(
        prog="constantcontact-auth",
        description="Obtain a Constant Contact refresh token (one-time consent by an account admin) "
        "and turn it into an Airflow connection.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    flows = parser.add_subparsers(dest="flow", required=True, metavar="{pkce,device}")
    pkce = flows.add_parser(
        "pkce",
        parents=[common],
        help="authorization code with PKCE: consent in a browser, redirect to a localhost port",
        description="Print (and open) the consent URL, receive the redirect on a localhost port, "
        "exchange the code.",
    )
    pkce.add_argument("--auth-url", help="authorize endpoint (overrides --oauth-base-url)")
    pkce.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"localhost port of the redirect URI http://127.0.0.1:PORT/callback (default: {DEFAULT_PORT})",
    )
    pkce.add_argument(
        "--redirect-uri",
        help="full redirect URI registered for the application, e.g. http://localhost:8976/callback "
        "(must be http on 127.0.0.1 or localhost with a port; overrides --port)",
    )
    pkce.add_argument("--no-browser", action="store_true", help="only print the URL, do not open a browser")
    device = flows.add_parser(
        "device",
        parents=[common],
        help="device flow for machines without a browser: enter a code on any other device",
        description="Print a verification URL and code, poll until the code is approved or expires.",
    )
    device.add_argument(
        "--device-auth-url", help="device authorization endpoint (overrides --oauth-base-url)"
    )
    return parser


def read_client_secret(given: str | None) -> str:
    """The client secret from the flag, the environment, or a prompt that does not echo."""
    secret = given or os.environ.get(CLIENT_SECRET_ENV)
    if not secret:
        if sys.stdin is not None and sys.stdin.isatty():
            secret = getpass.getpass("Client secret of the application (not echoed): ")
        elif sys.stdin is not None:
            secret = sys.stdin.readline()
    secret = (secret or "").strip()
    if not secret:
        raise AuthCliError(
            f"No client secret: pass it in ${CLIENT_SECRET_ENV}, at the prompt, or with --client-secret.",
            EXIT_USAGE,
        )
    return secret


def _obtain_tokens(args: argparse.Namespace, client: OAuthClient, urls: dict[str, str]) -> dict[str, Any]:
    if args.flow == "pkce":
        redirect_uri = args.redirect_uri or f"http://127.0.0.1:{args.port}/callback"
        return run_pkce(
            client,
            auth_url=urls["auth_url"],
            token_url=urls["token_url"],
            redirect_uri=redirect_uri,
            scopes=args.scopes,
            timeout=args.timeout or DEFAULT_PKCE_TIMEOUT,
            launch_browser=not args.no_browser,
            out=sys.stderr,
        )
    return run_device(
        client,
        device_auth_url=urls["device_auth_url"],
        token_url=urls["token_url"],
        scopes=args.scopes,
        timeout=args.timeout,
        out=sys.stderr,
    )


def _emit(args: argparse.Namespace, connection: dict[str, Any], out: TextIO, err: TextIO) -> None:
    if args.save:
        created = save_connection(args.conn_id, connection)
        print(
            f"{'Created' if created else 'Updated'} connection {args.conn_id!r} in the Airflow metadata DB.",
            file=err,
        )
        shadow = shadowing_env_var(args.conn_id)
        if shadow:
            print(
                f"Warning: the environment variable {shadow} is set here. Airflow reads it before the "
                "metadata DB, so wherever it is set it shadows the saved connection: unset it there.",
                file=err,
            )
    if args.output_file:
        write_private_file(args.output_file, render(connection, args.output, args.conn_id))
        print(f"Wrote the connection ({args.output}, secrets included) to {args.output_file}.", file=err)
    print(
        render(connection if args.show_secrets else masked(connection), args.output, args.conn_id), file=out
    )
    if not args.show_secrets:
        print("(secrets shown as ***: add --show-secrets to print them)", file=err)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `constantcontact-auth` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.client_id:
        parser.error(f"--client-id is required (or set ${CLIENT_ID_ENV})")
    if not args.scopes.split():
        parser.error("--scopes must name at least one scope")
    if args.public_client and args.client_secret:
        parser.error("--public-client and --client-secret exclude each other")
    try:
        client_secret = None if args.public_client else read_client_secret(args.client_secret)
        if args.save:
            check_can_save()
        if not (args.show_secrets or args.save or args.output_file):
            print(
                "Note: the client secret and refresh token will be printed as ***. Add --save, "
                "--output-file PATH or --show-secrets to keep them.",
                file=sys.stderr,
            )
        urls = oauth_urls(
            args.oauth_base_url,
            auth_url=getattr(args, "auth_url", None),
            token_url=args.token_url,
            device_auth_url=getattr(args, "device_auth_url", None),
        )
        client = OAuthClient(args.client_id, client_secret)
        tokens = _obtain_tokens(args, client, urls)
        refresh_token = require_refresh_token(tokens)
        granted = str(tokens.get("scope") or "").split()
        if granted and "contact_data" not in granted:
            print(
                f"Warning: the contact_data scope was not granted (granted: {' '.join(granted)}); the "
                "provider needs it to manage lists and import contacts.",
                file=sys.stderr,
            )
        connection = build_connection(
            client_id=args.client_id,
            client_secret=client_secret,
            refresh_token=refresh_token,
            api_base_url=args.api_base_url,
            token_url=urls["token_url"],
            max_requests_per_second=args.max_requests_per_second,
        )
        print("Authorised: obtained a refresh token.", file=sys.stderr)
        _emit(args, connection, sys.stdout, sys.stderr)
    except AuthCliError as exc:
        print(f"constantcontact-auth: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("constantcontact-auth: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
