"""`constantcontact-auth` against the sandbox over real HTTP.

A "browser" here is a requests client following the consent URL: the sandbox's authorize
endpoint auto-approves (or denies) and redirects to the CLI's localhost listener, as Constant
Contact does after the account admin clicks Allow.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from airflow_provider_constantcontact.cli import _output, _pkce
from airflow_provider_constantcontact.cli._device import run_device
from airflow_provider_constantcontact.cli._oauth import (
    EXIT_DENIED,
    EXIT_EXPIRED,
    EXIT_FAILURE,
    EXIT_INVALID_CLIENT,
    EXIT_NO_REFRESH_TOKEN,
    EXIT_PORT_IN_USE,
    EXIT_USAGE,
    AuthCliError,
    OAuthClient,
)
from airflow_provider_constantcontact.cli.auth import main
from airflow_provider_constantcontact.sandbox import ConstantContactSandbox
from tests.airflow_standalone import free_port
from tests.conftest import airflow_env

CLI = str(Path(sys.executable).parent / "constantcontact-auth")


class FakeBrowser:
    """Stands in for the person's browser: follows the consent URL in a thread, like a click on Allow."""

    def __init__(self, *, tamper_state: bool = False, act: bool = True) -> None:
        self.tamper_state = tamper_state
        self.act = act
        self.urls: list[str] = []
        self.responses: list[requests.Response] = []
        self._threads: list[threading.Thread] = []

    def __call__(self, url: str) -> bool:
        self.urls.append(url)
        if self.act:
            thread = threading.Thread(target=self._visit, args=(url,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return True

    def _visit(self, url: str) -> None:
        if not self.tamper_state:
            self.responses.append(requests.get(url, timeout=30))
            return
        consent = requests.get(url, allow_redirects=False, timeout=30)
        location = consent.headers["Location"].replace("state=", "state=forged", 1)
        self.responses.append(requests.get(location, timeout=30))

    def join(self) -> None:
        for thread in self._threads:
            thread.join(timeout=30)


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> FakeBrowser:
    fake = FakeBrowser()
    monkeypatch.setattr(_pkce, "open_browser", fake)
    return fake


@pytest.fixture
def slow_poll_sandbox(
    constantcontact_sandbox_factory: Callable[..., ConstantContactSandbox],
) -> ConstantContactSandbox:
    """A sandbox with a device poll interval of 1 s (so slow_down is enforced) and no token pacing."""
    return constantcontact_sandbox_factory(token_rate_limit=0, rate_limit=0, device_poll_interval=1)


def oauth_args(sandbox: ConstantContactSandbox, *, secret: str | None = None) -> list[str]:
    return [
        "--client-id",
        sandbox.client_id,
        "--client-secret",
        secret or sandbox.client_secret,
        "--oauth-base-url",
        f"{sandbox.base_url}/oauth2/default/v1",
        "--api-base-url",
        sandbox.api_base_url,
    ]


def run_main(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_refresh_token_works(sandbox: ConstantContactSandbox, refresh_token: str) -> None:
    """The token the CLI obtained refreshes at the sandbox and the access token reads the API."""
    response = requests.post(
        sandbox.token_url,
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=(sandbox.client_id, sandbox.client_secret),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    lists = requests.get(
        f"{sandbox.api_base_url}/contact_lists",
        headers={"Authorization": f"Bearer {response.json()['access_token']}"},
        timeout=10,
    )
    assert lists.status_code == 200, lists.text


# -- authorization code with PKCE ------------------------------------------------------------


def test_pkce_end_to_end_prints_masked_connection_json(
    slow_poll_sandbox: ConstantContactSandbox, browser: FakeBrowser, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    code, out, err = run_main(capsys, ["pkce", *oauth_args(slow_poll_sandbox), "--port", str(port)])
    browser.join()

    assert code == 0, err
    connection = json.loads(out)
    assert connection == {
        "conn_type": "constantcontact",
        "login": slow_poll_sandbox.client_id,
        "password": "***",
        "extra": {
            "refresh_token": "***",
            "api_base_url": slow_poll_sandbox.api_base_url,
            "token_url": slow_poll_sandbox.token_url,
        },
    }
    assert slow_poll_sandbox.client_secret not in out + err
    # The consent URL carries everything the authorize endpoint needs, PKCE included.
    [url] = browser.urls
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert url.startswith(slow_poll_sandbox.authorize_url + "?")
    assert query["redirect_uri"] == f"http://127.0.0.1:{port}/callback"
    assert query["response_type"] == "code"
    assert query["scope"].split() == ["contact_data", "offline_access"]
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43
    assert len(query["state"]) >= 32
    assert url in err  # printed for a person without a browser, too
    # The browser landed on the listener's success page.
    [page] = browser.responses
    assert page.status_code == 200
    assert "Authorisation complete" in page.text
    assert "code=" not in page.text


def test_pkce_show_secrets_gives_a_working_refresh_token(
    slow_poll_sandbox: ConstantContactSandbox, browser: FakeBrowser, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main(
        capsys,
        ["pkce", *oauth_args(slow_poll_sandbox), "--port", str(free_port()), "--show-secrets", "--scopes",
         "contact_data account_read offline_access", "--max-requests-per-second", "2"],
    )  # fmt: skip

    assert code == 0, err
    connection = json.loads(out)
    assert connection["password"] == slow_poll_sandbox.client_secret
    assert connection["extra"]["max_requests_per_second"] == 2
    refresh_token = connection["extra"]["refresh_token"]
    assert refresh_token not in err
    assert refresh_token != slow_poll_sandbox.refresh_token  # a new consent, not the seeded one
    assert_refresh_token_works(slow_poll_sandbox, refresh_token)


def test_pkce_console_script_airflow_cli_output_adds_the_connection(
    slow_poll_sandbox: ConstantContactSandbox, airflow_db: Path, request: pytest.FixtureRequest
) -> None:
    """The installed console script, secret piped on stdin, browser-less; its command really works."""
    request.addfinalizer(lambda: _delete_connection("cc_from_cli"))
    args = [
        a
        for a in oauth_args(slow_poll_sandbox)
        if a not in ("--client-secret", slow_poll_sandbox.client_secret)
    ]
    env = {k: v for k, v in os.environ.items() if k != "CONSTANTCONTACT_CLIENT_SECRET"}
    process = subprocess.Popen(
        [CLI, "pkce", *args, "--port", str(free_port()), "--no-browser", "--conn-id", "cc_from_cli",
         "--output", "airflow-cli", "--show-secrets"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert process.stdin is not None
        process.stdin.write(slow_poll_sandbox.client_secret + "\n")
        process.stdin.close()
        process.stdin = None  # written and closed: communicate() must not flush it again
        url = _read_until(process, lambda line: line.strip().startswith("http"))
        assert "Opened it in your browser" not in url
        page = requests.get(url.strip(), timeout=30)
        assert page.status_code == 200
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, err

    command = shlex.split(out.strip())
    assert command[:4] == ["airflow", "connections", "add", "cc_from_cli"]
    assert command[4] == "--conn-json"
    result = subprocess.run(
        [sys.executable, "-m", "airflow", *command[1:]],
        env=airflow_env(), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    stored = _get_connection("cc_from_cli")
    assert stored.conn_type == "constantcontact"
    assert stored.password == slow_poll_sandbox.client_secret
    assert_refresh_token_works(slow_poll_sandbox, stored.extra_dejson["refresh_token"])


DEAD_OAUTH_BASE_URL = "http://127.0.0.1:9/x"  # port 9 (discard): nothing listens, every call fails


def override_args(sandbox: ConstantContactSandbox, *endpoints: str) -> list[str]:
    """The sandbox's arguments with --oauth-base-url dead, so only explicit endpoint URLs can work."""
    args = oauth_args(sandbox)
    args[args.index("--oauth-base-url") + 1] = DEAD_OAUTH_BASE_URL
    return [*args, *endpoints]


def test_pkce_auth_url_and_token_url_override_the_oauth_base_url(
    slow_poll_sandbox: ConstantContactSandbox, browser: FakeBrowser, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoints = ["--auth-url", slow_poll_sandbox.authorize_url, "--token-url", slow_poll_sandbox.token_url]
    argv = [
        "pkce",
        *override_args(slow_poll_sandbox, *endpoints),
        "--port",
        str(free_port()),
        "--show-secrets",
    ]
    code, out, err = run_main(capsys, argv)
    browser.join()

    assert code == 0, err
    [url] = browser.urls
    assert url.startswith(slow_poll_sandbox.authorize_url + "?")
    connection = json.loads(out)
    assert connection["extra"]["token_url"] == slow_poll_sandbox.token_url
    assert_refresh_token_works(slow_poll_sandbox, connection["extra"]["refresh_token"])


def test_pkce_public_client_sends_no_secret(
    slow_poll_sandbox: ConstantContactSandbox, browser: FakeBrowser, capsys: pytest.CaptureFixture[str]
) -> None:
    """An application without a client secret: the client ID goes in the form, no Basic auth."""
    args = [
        a
        for a in oauth_args(slow_poll_sandbox)
        if a not in ("--client-secret", slow_poll_sandbox.client_secret)
    ]
    code, out, err = run_main(
        capsys, ["pkce", *args, "--public-client", "--port", str(free_port()), "--show-secrets"]
    )
    assert code == 0, err
    connection = json.loads(out)
    assert connection["password"] is None
    # The refresh token of a public client refreshes with the client ID alone.
    response = requests.post(
        slow_poll_sandbox.token_url,
        data={
            "grant_type": "refresh_token",
            "refresh_token": connection["extra"]["refresh_token"],
            "client_id": slow_poll_sandbox.client_id,
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text


def test_denied_consent_exits_3(
    slow_poll_sandbox: ConstantContactSandbox, browser: FakeBrowser, capsys: pytest.CaptureFixture[str]
) -> None:
    slow_poll_sandbox.deny_next_consent()
    code, out, err = run_main(capsys, ["pkce", *oauth_args(slow_poll_sandbox), "--port", str(free_port())])
    browser.join()

    assert code == EXIT_DENIED
    assert out == ""
    assert "consent was denied (access_denied)" in err.lower()
    assert browser.responses[0].status_code == 400
    assert "Authorisation not granted" in browser.responses[0].text


def test_wrong_client_secret_exits_4_without_echoing_it(
    slow_poll_sandbox: ConstantContactSandbox, browser: FakeBrowser, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = "not-the-secret-4711"
    argv = ["pkce", *oauth_args(slow_poll_sandbox, secret=wrong), "--port", str(free_port())]
    code, out, err = run_main(capsys, argv)

    assert code == EXIT_INVALID_CLIENT
    assert out == ""
    assert "invalid_client" in err
    assert "client ID or client secret" in err
    assert wrong not in err


def test_missing_offline_access_exits_6(
    slow_poll_sandbox: ConstantContactSandbox, browser: FakeBrowser, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main(
        capsys,
        ["pkce", *oauth_args(slow_poll_sandbox), "--port", str(free_port()), "--scopes", "contact_data"],
    )

    assert code == EXIT_NO_REFRESH_TOKEN
    assert out == ""
    assert "no refresh token" in err
    assert "offline_access" in err


def test_forged_state_is_refused(
    slow_poll_sandbox: ConstantContactSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeBrowser(tamper_state=True)
    monkeypatch.setattr(_pkce, "open_browser", fake)
    assert main(["pkce", *oauth_args(slow_poll_sandbox), "--port", str(free_port())]) == EXIT_FAILURE


def test_port_in_use_exits_7_before_any_consent(
    slow_poll_sandbox: ConstantContactSandbox, browser: FakeBrowser, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _out, err = run_main(capsys, ["pkce", *oauth_args(slow_poll_sandbox), "--port", str(port)])

    assert code == EXIT_PORT_IN_USE
    assert f"Port {port} on 127.0.0.1 is already in use" in err
    assert browser.urls == []


def test_no_redirect_times_out_with_exit_5(
    slow_poll_sandbox: ConstantContactSandbox,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(_pkce, "open_browser", FakeBrowser(act=False))
    code, _out, err = run_main(
        capsys, ["pkce", *oauth_args(slow_poll_sandbox), "--port", str(free_port()), "--timeout", "1"]
    )
    assert code == EXIT_EXPIRED
    assert "No redirect arrived" in err


def test_redirect_uri_must_be_loopback(
    slow_poll_sandbox: ConstantContactSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = run_main(
        capsys, ["pkce", *oauth_args(slow_poll_sandbox), "--redirect-uri", "https://example.com/callback"]
    )
    assert code == EXIT_FAILURE
    assert "http://127.0.0.1:<port>" in err


def test_localhost_redirect_uri_is_sent_as_given(
    slow_poll_sandbox: ConstantContactSandbox, browser: FakeBrowser, capsys: pytest.CaptureFixture[str]
) -> None:
    redirect_uri = f"http://localhost:{free_port()}/oauth/cc"
    code, _out, err = run_main(
        capsys, ["pkce", *oauth_args(slow_poll_sandbox), "--redirect-uri", redirect_uri]
    )
    assert code == 0, err
    assert parse_qs(urlsplit(browser.urls[0]).query)["redirect_uri"] == [redirect_uri]


# -- client secret input ---------------------------------------------------------------------


def test_client_secret_from_environment(
    slow_poll_sandbox: ConstantContactSandbox,
    browser: FakeBrowser,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CONSTANTCONTACT_CLIENT_SECRET", slow_poll_sandbox.client_secret)
    args = [
        a
        for a in oauth_args(slow_poll_sandbox)
        if a not in ("--client-secret", slow_poll_sandbox.client_secret)
    ]
    code, out, err = run_main(capsys, ["pkce", *args, "--port", str(free_port()), "--show-secrets"])
    assert code == 0, err
    assert json.loads(out)["password"] == slow_poll_sandbox.client_secret


def test_missing_client_secret_is_a_usage_error(
    slow_poll_sandbox: ConstantContactSandbox,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("CONSTANTCONTACT_CLIENT_SECRET", raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    args = [
        a
        for a in oauth_args(slow_poll_sandbox)
        if a not in ("--client-secret", slow_poll_sandbox.client_secret)
    ]
    code, _out, err = run_main(capsys, ["device", *args])
    assert code == EXIT_USAGE
    assert "No client secret" in err


def test_missing_client_id_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CONSTANTCONTACT_CLIENT_ID", raising=False)
    with pytest.raises(SystemExit) as exited:
        main(["device", "--client-secret", "x"])
    assert exited.value.code == EXIT_USAGE
    assert "--client-id is required" in capsys.readouterr().err


# -- device flow -----------------------------------------------------------------------------


def _read_until(process: subprocess.Popen[str], wanted: Callable[[str], bool]) -> str:
    """Read the process's stderr line by line until ``wanted(line)``; that line."""
    assert process.stderr is not None
    seen = []
    for line in iter(process.stderr.readline, ""):
        seen.append(line)
        if wanted(line):
            return line
    raise AssertionError("the CLI ended before printing what was expected:\n" + "".join(seen))


def run_device_console_script(args: list[str]) -> tuple[dict[str, Any], str]:
    """Run `constantcontact-auth device`, approve its code as the person would; the connection."""
    process = subprocess.Popen(
        [CLI, "device", *args, "--output", "json", "--show-secrets"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _read_until(process, lambda line: "enter the code" in line)
        user_code = _read_until(process, lambda line: bool(line.strip())).strip()
        complete = _read_until(process, lambda line: "directly:" in line).split("directly: ", 1)[1].strip()
        assert user_code in complete
        assert requests.get(complete, timeout=30).status_code == 200  # the person approves
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, err
    return json.loads(out), complete


def test_device_flow_end_to_end_console_script(slow_poll_sandbox: ConstantContactSandbox) -> None:
    """The person opens the verification URL elsewhere and approves; the CLI's poll then succeeds."""
    connection, _complete = run_device_console_script(oauth_args(slow_poll_sandbox))
    assert connection["login"] == slow_poll_sandbox.client_id
    assert connection["extra"]["token_url"] == slow_poll_sandbox.token_url
    assert_refresh_token_works(slow_poll_sandbox, connection["extra"]["refresh_token"])


def test_device_auth_url_and_token_url_override_the_oauth_base_url(
    slow_poll_sandbox: ConstantContactSandbox,
) -> None:
    endpoints = [
        "--device-auth-url",
        slow_poll_sandbox.device_authorize_url,
        "--token-url",
        slow_poll_sandbox.token_url,
    ]
    connection, complete = run_device_console_script(override_args(slow_poll_sandbox, *endpoints))
    assert complete.startswith(slow_poll_sandbox.base_url)  # the verification URL came from the override
    assert connection["extra"]["token_url"] == slow_poll_sandbox.token_url
    assert_refresh_token_works(slow_poll_sandbox, connection["extra"]["refresh_token"])


class DeviceUser:
    """Plays the person during run_device: reads the printed code and acts on the N-th poll wait."""

    def __init__(
        self, sandbox: ConstantContactSandbox, action: str | None, on_sleep: int = 1, real_sleep: bool = False
    ) -> None:
        self.sandbox = sandbox
        self.action = action
        self.on_sleep = on_sleep
        self.real_sleep = real_sleep
        self.out = io.StringIO()
        self.sleeps: list[float] = []

    def user_code(self) -> str:
        lines = self.out.getvalue().splitlines()
        return lines[lines.index("and enter the code") + 2].strip()

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.real_sleep:
            time.sleep(seconds)
        if len(self.sleeps) == self.on_sleep and self.action == "approve":
            self.sandbox.approve_device(self.user_code())
        elif len(self.sleeps) == self.on_sleep and self.action == "deny":
            self.sandbox.deny_device(self.user_code())

    def run(self, *, secret: str | None = None, clock: Callable[[], float] | None = None) -> dict[str, Any]:
        client = OAuthClient(self.sandbox.client_id, secret or self.sandbox.client_secret)
        kwargs: dict[str, Any] = {"clock": clock} if clock else {}
        return run_device(
            client,
            device_auth_url=self.sandbox.device_authorize_url,
            token_url=self.sandbox.token_url,
            scopes="contact_data offline_access",
            timeout=None,
            out=self.out,
            sleep=self.sleep,
            **kwargs,
        )


def test_device_flow_honours_slow_down(slow_poll_sandbox: ConstantContactSandbox) -> None:
    # The fake sleep returns at once: the second poll comes too fast, the sandbox says slow_down.
    user = DeviceUser(slow_poll_sandbox, "approve", on_sleep=3)
    tokens = user.run()
    assert user.sleeps == [1, 1, 6]
    assert tokens["refresh_token"]


def test_device_flow_denied(slow_poll_sandbox: ConstantContactSandbox) -> None:
    with pytest.raises(AuthCliError, match=r"denied \(access_denied\)") as raised:
        DeviceUser(slow_poll_sandbox, "deny").run()
    assert raised.value.exit_code == EXIT_DENIED


def test_device_code_expired_on_the_server(
    constantcontact_sandbox_factory: Callable[..., ConstantContactSandbox],
) -> None:
    """The token endpoint answers expired_token (our own clock is frozen, so the server decides)."""
    sandbox = constantcontact_sandbox_factory(token_rate_limit=0, device_poll_interval=1, device_code_ttl=1)
    user = DeviceUser(sandbox, None, real_sleep=True)
    with pytest.raises(AuthCliError, match=r"expired before it was approved \(expired_token\)") as raised:
        user.run(clock=lambda: 0.0)
    assert raised.value.exit_code == EXIT_EXPIRED


def test_device_code_expired_cli_exits_5(
    constantcontact_sandbox_factory: Callable[..., ConstantContactSandbox], capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox = constantcontact_sandbox_factory(token_rate_limit=0, device_poll_interval=1, device_code_ttl=2)
    code, out, err = run_main(capsys, ["device", *oauth_args(sandbox)])
    assert code == EXIT_EXPIRED
    assert out == ""
    assert "expired" in err


def test_device_flow_wrong_secret_fails_before_showing_a_code(
    slow_poll_sandbox: ConstantContactSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = run_main(capsys, ["device", *oauth_args(slow_poll_sandbox, secret="wrong-secret-1234")])
    assert code == EXIT_INVALID_CLIENT
    assert "invalid_client" in err
    assert "enter the code" not in err


# -- outputs ---------------------------------------------------------------------------------


def test_output_file_holds_secrets_privately(
    slow_poll_sandbox: ConstantContactSandbox,
    browser: FakeBrowser,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = tmp_path / "conn.json"
    code, out, err = run_main(
        capsys,
        ["pkce", *oauth_args(slow_poll_sandbox), "--port", str(free_port()), "--output-file", str(target)],
    )
    assert code == 0, err
    assert json.loads(out)["extra"]["refresh_token"] == "***"
    written = json.loads(target.read_text())
    assert written["password"] == slow_poll_sandbox.client_secret
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert written["extra"]["refresh_token"] not in out + err
    assert_refresh_token_works(slow_poll_sandbox, written["extra"]["refresh_token"])


def test_output_file_that_exists_is_made_private_before_the_secrets_are_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "conn.json"
    target.write_text("old")
    target.chmod(0o644)
    modes_when_written: list[int] = []
    real_fdopen = os.fdopen

    def recording_fdopen(fd: int, *args: Any, **kwargs: Any) -> Any:
        handle = real_fdopen(fd, *args, **kwargs)
        real_write = handle.write

        def write(text: str) -> int:
            modes_when_written.append(stat.S_IMODE(os.fstat(fd).st_mode))
            return real_write(text)

        handle.write = write
        return handle

    monkeypatch.setattr(_output.os, "fdopen", recording_fdopen)
    _output.write_private_file(target, '{"password": "s3cret"}')

    assert modes_when_written == [0o600]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_text() == '{"password": "s3cret"}\n'


def test_airflow_cli_output_is_masked_by_default(
    slow_poll_sandbox: ConstantContactSandbox, browser: FakeBrowser, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main(
        capsys,
        ["pkce", *oauth_args(slow_poll_sandbox), "--port", str(free_port()), "--output", "airflow-cli",
         "--conn-id", "cc x"],
    )  # fmt: skip
    assert code == 0, err
    command = shlex.split(out)
    assert command[:5] == ["airflow", "connections", "add", "cc x", "--conn-json"]
    connection = json.loads(command[5])
    assert connection["password"] == "***"
    assert connection["extra"]["refresh_token"] == "***"
    assert slow_poll_sandbox.client_secret not in out + err


def _get_connection(conn_id: str) -> Any:
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        conn = session.scalar(select(Connection).where(Connection.conn_id == conn_id))
        assert conn is not None, f"connection {conn_id} not in the metadata DB"
        session.expunge(conn)
        return conn


def _delete_connection(conn_id: str) -> None:
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    with create_session() as session:
        session.execute(delete(Connection).where(Connection.conn_id == conn_id))


@pytest.fixture
def saved_conn_id(airflow_db: Path) -> Iterator[str]:
    conn_id = "cc_saved_by_cli"
    yield conn_id
    _delete_connection(conn_id)


def test_save_creates_then_updates_the_connection(
    slow_poll_sandbox: ConstantContactSandbox,
    browser: FakeBrowser,
    saved_conn_id: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    base = ["pkce", *oauth_args(slow_poll_sandbox), "--save", "--conn-id", saved_conn_id]
    code, out, err = run_main(capsys, [*base, "--port", str(free_port())])
    assert code == 0, err
    assert f"Created connection '{saved_conn_id}'" in err
    assert "shadows" not in err
    assert slow_poll_sandbox.client_secret not in out + err
    first = _get_connection(saved_conn_id)
    assert first.conn_type == "constantcontact"
    assert first.login == slow_poll_sandbox.client_id
    assert first.password == slow_poll_sandbox.client_secret
    assert first.extra_dejson["api_base_url"] == slow_poll_sandbox.api_base_url
    assert first.extra_dejson["token_url"] == slow_poll_sandbox.token_url
    assert_refresh_token_works(slow_poll_sandbox, first.extra_dejson["refresh_token"])

    code, _out, err = run_main(capsys, [*base, "--port", str(free_port()), "--max-requests-per-second", "0"])
    assert code == 0, err
    assert f"Updated connection '{saved_conn_id}'" in err
    second = _get_connection(saved_conn_id)
    assert second.extra_dejson["refresh_token"] != first.extra_dejson["refresh_token"]
    assert second.extra_dejson["max_requests_per_second"] == 0


def test_save_warns_when_an_environment_variable_shadows_the_connection(
    slow_poll_sandbox: ConstantContactSandbox,
    browser: FakeBrowser,
    saved_conn_id: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env_var = "AIRFLOW_CONN_" + saved_conn_id.upper()
    monkeypatch.setenv(env_var, '{"conn_type": "constantcontact", "login": "stale"}')
    argv = [
        "pkce",
        *oauth_args(slow_poll_sandbox),
        "--save",
        "--conn-id",
        saved_conn_id,
        "--port",
        str(free_port()),
    ]
    code, _out, err = run_main(capsys, argv)

    assert code == 0, err
    assert f"Created connection '{saved_conn_id}'" in err
    [warning] = [line for line in err.splitlines() if line.startswith("Warning:")]
    assert env_var in warning
    assert "shadows the saved connection" in warning
    assert "stale" not in err  # names the variable, never prints its value
    assert _get_connection(saved_conn_id).login == slow_poll_sandbox.client_id


def test_save_without_a_migrated_db_fails_clearly(
    slow_poll_sandbox: ConstantContactSandbox,
    browser: FakeBrowser,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def broken_session() -> Any:
        raise _FakeDbError("no such table: connection")

    import airflow.utils.session

    monkeypatch.setattr(airflow.utils.session, "create_session", broken_session)
    code, out, err = run_main(
        capsys, ["pkce", *oauth_args(slow_poll_sandbox), "--port", str(free_port()), "--save"]
    )
    assert code == EXIT_FAILURE
    assert "no such table: connection" in err
    assert "airflow db migrate" in err
    assert out == ""
    assert "parameters" not in err  # never the failed statement's (encrypted) values
    assert browser.urls == []  # checked before the consent, which would otherwise be wasted


class _FakeDbError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__("statement with [parameters: secret]")
        self.orig = reason
