"""Authorization code flow with PKCE: consent URL, localhost redirect listener, code exchange."""

from __future__ import annotations

import base64
import errno
import hashlib
import html
import os
import secrets
import socket
import sys
import time
import webbrowser
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import TracebackType
from typing import Any, TextIO
from urllib.parse import parse_qs, urlencode, urlsplit

from airflow_provider_constantcontact.cli._oauth import (
    EXIT_DENIED,
    EXIT_EXPIRED,
    EXIT_FAILURE,
    EXIT_PORT_IN_USE,
    AuthCliError,
    OAuthClient,
    OAuthEndpointError,
    explain,
)

DEFAULT_PORT = 8976
LOOPBACK_HOSTS = {"127.0.0.1": "127.0.0.1", "localhost": "127.0.0.1", "::1": "::1"}

_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title></head>
<body style="font-family: sans-serif; margin: 3em"><h1>{title}</h1><p>{body}</p></body></html>"""


def make_verifier() -> str:
    """A PKCE code verifier: 86 unreserved characters (RFC 7636 allows 43 to 128)."""
    return secrets.token_urlsafe(64)


def code_challenge(verifier: str) -> str:
    """The S256 challenge: unpadded base64url of the verifier's SHA-256."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def consent_url(
    auth_url: str, *, client_id: str, redirect_uri: str, scopes: str, state: str, challenge: str
) -> str:
    """The authorize URL the account admin opens to sign in and consent."""
    query = urlencode(
        {
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "scope": scopes,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    return f"{auth_url}{'&' if '?' in auth_url else '?'}{query}"


def parse_redirect_uri(redirect_uri: str) -> tuple[str, int, str]:
    """``(bind address, port, path)`` of a loopback redirect URI; AuthCliError when it is not one."""
    parts = urlsplit(redirect_uri)
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "http" or host not in LOOPBACK_HOSTS or not port:
        raise AuthCliError(
            f"The redirect URI must be http://127.0.0.1:<port>/<path> or http://localhost:<port>/<path> "
            f"(this command listens on it), not {redirect_uri!r}.",
            EXIT_FAILURE,
        )
    return LOOPBACK_HOSTS[host], port, parts.path or "/"


class _Server(HTTPServer):
    callback_path = "/"
    result: dict[str, str] | None = None


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path != self.server.callback_path:
            self._reply(404, "Not found", "This is the constantcontact-auth redirect listener.")
            return
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        if "error" in query:
            self._reply(
                400,
                "Authorisation not granted",
                f"Constant Contact answered {html.escape(query['error'])}. Return to the terminal.",
            )
        elif "code" in query:
            self._reply(
                200,
                "Authorisation complete",
                "constantcontact-auth received the authorisation. You can close this tab and return to "
                "the terminal.",
            )
        else:
            self._reply(400, "Unexpected request", "No code or error in the redirect.")
            return
        self.server.result = query

    def _reply(self, status: int, title: str, body: str) -> None:
        page = _PAGE.format(title=title, body=body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(page)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(page)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default access log: the query string carries the authorization code."""


class CallbackListener:
    """Listens on the redirect URI's loopback port for the one redirect carrying code or error."""

    def __init__(self, redirect_uri: str) -> None:
        self.address, self.port, self.path = parse_redirect_uri(redirect_uri)
        self._server: _Server | None = None

    def __enter__(self) -> CallbackListener:
        server_class = type(
            "_CallbackServer",
            (_Server,),
            {"address_family": socket.AF_INET6 if ":" in self.address else socket.AF_INET},
        )
        try:
            self._server = server_class((self.address, self.port), _Handler)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise AuthCliError(
                    f"Port {self.port} on {self.address} is already in use, so the redirect cannot be "
                    "received. Stop what uses it, or pass another --port (or --redirect-uri) that is "
                    "also registered as a redirect URI of your application.",
                    EXIT_PORT_IN_USE,
                ) from None
            raise AuthCliError(f"Cannot listen on {self.address}:{self.port}: {exc.strerror}.") from None
        self._server.callback_path = self.path
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.server_close()

    def wait(self, timeout: float) -> dict[str, str]:
        """Serve requests until the redirect arrives; its query parameters."""
        assert self._server is not None, "use as a context manager"
        deadline = time.monotonic() + timeout
        while self._server.result is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AuthCliError(
                    f"No redirect arrived at http://{self.address}:{self.port}{self.path} within "
                    f"{timeout:.0f} s. Open the URL above in a browser on this machine (or use the device "
                    "flow: `constantcontact-auth device`), or raise --timeout.",
                    EXIT_EXPIRED,
                )
            self._server.timeout = min(remaining, 1.0)
            self._server.handle_request()
        return self._server.result


def can_open_browser() -> bool:
    """Whether a graphical browser is likely: avoids console browsers taking over the terminal."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def open_browser(url: str) -> bool:
    """Open ``url`` in the person's browser; False when there is none."""
    if not can_open_browser():
        return False
    try:
        return webbrowser.open(url, new=2)
    except webbrowser.Error:
        return False


def run_pkce(
    client: OAuthClient,
    *,
    auth_url: str,
    token_url: str,
    redirect_uri: str,
    scopes: str,
    timeout: float,
    launch_browser: bool,
    out: TextIO,
    opener: Callable[[str], bool] | None = None,
) -> dict[str, Any]:
    """Run the whole flow; the token endpoint's answer (access and refresh token, scope)."""
    verifier = make_verifier()
    state = secrets.token_urlsafe(24)
    url = consent_url(
        auth_url,
        client_id=client.client_id,
        redirect_uri=redirect_uri,
        scopes=scopes,
        state=state,
        challenge=code_challenge(verifier),
    )
    with CallbackListener(redirect_uri) as listener:
        print(
            "Open this URL in a browser, sign in to the Constant Contact account to connect and allow "
            f"access:\n\n  {url}\n",
            file=out,
        )
        opened = launch_browser and (opener or open_browser)(url)
        print(
            ("Opened it in your browser. " if opened else "")
            + f"Waiting up to {timeout:.0f} s for the redirect to {redirect_uri} ...",
            file=out,
            flush=True,
        )
        query = listener.wait(timeout)
    if query.get("state") != state:
        raise AuthCliError(
            "The redirect carried a different state than this run sent: it belongs to another "
            "(older) consent attempt or was forged. Run the command again and use the new URL."
        )
    if "error" in query:
        error = query["error"]
        description = query.get("error_description", "")
        if error == "access_denied":
            raise AuthCliError(
                "Consent was denied (access_denied) in the browser. Run the command again and choose "
                "Allow, signed in as a user of the Constant Contact account to connect.",
                EXIT_DENIED,
            )
        raise AuthCliError(
            f"Constant Contact refused the authorization request: {error}"
            + (f" ({description})" if description else "")
            + ". Check the client ID, the scopes and that the redirect URI is registered for the app."
        )
    try:
        return client.post(
            token_url,
            {
                "grant_type": "authorization_code",
                "code": query["code"],
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
            },
        )
    except OAuthEndpointError as exc:
        raise explain(exc, step="Exchanging the authorization code") from None
