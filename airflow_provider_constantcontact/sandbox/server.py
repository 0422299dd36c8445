"""HTTP plumbing: the request pipeline (faults, auth, limits, routing, logging) and the server."""

from __future__ import annotations

import contextlib
import html
import json
import socket
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from airflow_provider_constantcontact.sandbox.api import Api
from airflow_provider_constantcontact.sandbox.applier import Applier
from airflow_provider_constantcontact.sandbox.constants import API_PREFIX, OAUTH_PREFIX
from airflow_provider_constantcontact.sandbox.control_api import CONTROL_PREFIX, ControlApi
from airflow_provider_constantcontact.sandbox.errors import (
    ApiError,
    error_list,
    for_status,
    not_found,
    oauth_for_status,
    quota_exceeded,
    throttled,
)
from airflow_provider_constantcontact.sandbox.faults import Faults
from airflow_provider_constantcontact.sandbox.limits import DailyQuota, TokenBucket
from airflow_provider_constantcontact.sandbox.oauth import OAuthServer
from airflow_provider_constantcontact.sandbox.routing import Request
from airflow_provider_constantcontact.sandbox.state import SandboxState

TOKEN_PATH = f"{OAUTH_PREFIX}/token"
AUTHORIZE_PATH = f"{OAUTH_PREFIX}/authorize"
DEVICE_AUTHORIZE_PATH = f"{OAUTH_PREFIX}/device/authorize"
ACTIVATE_PATH = "/activate"
HEALTH_PATH = "/health"
#: The request log keeps the newest entries only, so a long-running sandbox does not grow forever.
REQUEST_LOG_SIZE = 100_000


@dataclass(frozen=True)
class RequestLogEntry:
    """One request as the sandbox saw it; ``status`` 0 means the connection was dropped."""

    method: str
    path: str
    query: dict[str, str]
    status: int
    body_bytes: int
    client_id: str | None
    time: float


@dataclass
class Response:
    """What the handler writes back."""

    status: int
    body: bytes
    headers: dict[str, str]


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    """A JSON response."""
    data = json.dumps(body, separators=(",", ":")).encode()
    return Response(status, data, {"Content-Type": "application/json", **(headers or {})})


def _html(status: int, title: str, text: str) -> Response:
    page = f"<!doctype html><title>{html.escape(title)}</title><h1>{html.escape(title)}</h1><p>{text}</p>"
    return Response(status, page.encode(), {"Content-Type": "text/html; charset=utf-8"})


def _canned_error(path: str, status: int) -> ApiError:
    """An error for ``status`` in the shape of the server ``path`` belongs to: the OAuth
    server's ``{error, error_description}`` on its paths, the API's shapes elsewhere."""
    if path.startswith(OAUTH_PREFIX + "/"):
        return oauth_for_status(status, int(time.time()) + 1)
    return for_status(status)


class App:
    """Turns a raw request into a response: faults, OAuth, rate limits, then the API routes."""

    def __init__(
        self,
        *,
        state: SandboxState,
        oauth: OAuthServer,
        lock: threading.RLock,
        rate_limit: float,
        daily_quota: int,
        verbose: bool = False,
    ) -> None:
        self.state = state
        self.oauth = oauth
        self.lock = lock
        self.applier = Applier(state, lock)
        self.api = Api(state, lock, self.applier.notify)
        self.control = ControlApi(state, lock)
        self.faults = Faults()
        self.bucket = TokenBucket(rate_limit)
        self.quota = DailyQuota(daily_quota)
        self.request_log: deque[RequestLogEntry] = deque(maxlen=REQUEST_LOG_SIZE)
        self.verbose = verbose

    def handle(self, method: str, target: str, headers: Any, body: bytes) -> Response | None:
        """Answer one request; None means: drop the connection without answering."""
        split = urlsplit(target)
        path = split.path
        query = {k: ",".join(v) for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        request = Request(method, path, query, headers, body)
        try:
            with self.lock:
                fault = self.faults.take(path, method)
            if fault is not None and fault.action is not None:
                fault.action()  # then the request is processed as usual
            elif fault is not None:
                if fault.status is None:
                    self._log(request, 0)
                    return None
                raise _canned_error(path, fault.status)
            response = self._route(request)
        except ApiError as exc:
            response = json_response(exc.status, exc.body, exc.headers)
        except Exception:  # a sandbox bug: answer like the real service would, and show it
            traceback.print_exc()
            error = _canned_error(path, 500)
            response = json_response(error.status, error.body, error.headers)
        self._log(request, response.status)
        return response

    def _log(self, request: Request, status: int) -> None:
        entry = RequestLogEntry(
            request.method,
            request.path,
            request.query,
            status,
            len(request.body),
            request.client_id or None,
            time.time(),
        )
        with self.lock:
            self.request_log.append(entry)
        if self.verbose:  # never the query string: it can hold email addresses
            print(f"{request.method} {request.path} {status}", file=sys.stderr, flush=True)

    def _route(self, request: Request) -> Response:
        path, method = request.path, request.method
        if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
            with self.lock:
                grant = self.oauth.authenticate(request.headers.get("Authorization"))
                request.client_id = grant.client_id
                if not self.bucket.allow(grant.client_id):
                    raise throttled()
                if not self.quota.allow(grant.client_id):
                    raise quota_exceeded()
            if "contact_data" not in grant.scopes:
                raise error_list(403, "forbidden", "The access token lacks the contact_data scope.")
            status, body = self.api.dispatch(request)
            return json_response(status, body)
        if path.startswith(CONTROL_PREFIX + "/"):
            status, body = self.control.dispatch(request)
            return json_response(status, body)
        routes: dict[tuple[str, str], Callable[[Request], Response]] = {
            ("POST", TOKEN_PATH): self._token,
            ("GET", AUTHORIZE_PATH): self._authorize,
            ("POST", DEVICE_AUTHORIZE_PATH): self._device_authorize,
            ("GET", ACTIVATE_PATH): self._activate,
            ("GET", HEALTH_PATH): lambda _r: json_response(200, {"status": "ok"}),
        }
        route = routes.get((method, path))
        if route is None:
            if any(p == path for _m, p in routes):
                raise error_list(405, "method_not_allowed", "Method Not Allowed")
            raise not_found("The requested resource does not exist.")
        return route(request)

    @staticmethod
    def _form(request: Request) -> dict[str, str]:
        try:
            parsed = parse_qs(request.body.decode(), keep_blank_values=True)
        except UnicodeDecodeError:
            parsed = {}
        return {k: v[0] for k, v in parsed.items()}

    def _token(self, request: Request) -> Response:
        form = self._form(request)
        with self.lock:
            body = self.oauth.token(request.headers.get("Authorization"), form)
        request.client_id = self.oauth.client_id
        return json_response(200, body, {"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _authorize(self, request: Request) -> Response:
        with self.lock:
            location = self.oauth.authorize(request.query)
        return Response(302, b"", {"Location": location})

    def _device_authorize(self, request: Request) -> Response:
        with self.lock:
            body = self.oauth.device_authorize(request.headers.get("Authorization"), self._form(request))
        return json_response(200, body, {"Cache-Control": "no-store"})

    def _activate(self, request: Request) -> Response:
        user_code = request.query.get("user_code", "").strip()
        if not user_code:
            form = (
                f'<form method="get" action="{ACTIVATE_PATH}"><label>Code <input name="user_code"></label>'
                "<button>Approve</button></form>"
            )
            return _html(200, "Activate your device", form)
        with self.lock:
            try:
                approved = self.oauth.verify_device_page(user_code)
            except KeyError:
                return _html(400, "Unknown or expired code", "Check the code shown on your device.")
        if approved:
            return _html(200, "Device approved", "You can close this window and return to your device.")
        return _html(200, "Access denied", "The device was not authorized.")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ConstantContactSandbox/1.0"
    timeout = 120
    server: SandboxHTTPServer
    #: BaseHTTPRequestHandler's pending header lines (send_header fills it); private, so untyped.
    _headers_buffer: list[bytes]

    def _serve(self) -> None:
        with self.server.app.applier.serving():
            self._serve_request()

    def _serve_request(self) -> None:
        body = self._read_body()
        if body is None:
            return
        response = self.server.app.handle(self.command, self.path, self.headers, body)
        if response is None:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        # Headers and body in one write: two small writes meet Nagle and delayed ACKs (40 ms).
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(response.body)
        self.flush_headers()

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def _read_body(self) -> bytes | None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.send_error(400, "Bad Content-Length")
            return None
        return self.rfile.read(length) if length > 0 else b""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Logging happens in App (without query strings)."""

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default access log: it would print query strings holding emails."""


class SandboxHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that can close kept-alive connections and join its threads."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: App) -> None:
        super().__init__(address, _Handler)
        self.app = app
        self._tracked: dict[threading.Thread, socket.socket] = {}
        self._tracked_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._process_tracked, args=(request, client_address), daemon=True, name="cc-sandbox-conn"
        )
        with self._tracked_lock:
            self._tracked[thread] = request
        thread.start()

    def _process_tracked(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._tracked_lock:
                self._tracked.pop(threading.current_thread(), None)

    def close_connections(self, timeout: float = 5.0) -> None:
        """Shut down every open connection and join the threads serving them."""
        with self._tracked_lock:
            tracked = list(self._tracked.items())
        for _thread, conn in tracked:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for thread, _conn in tracked:
            thread.join(max(0.0, deadline - time.monotonic()))
