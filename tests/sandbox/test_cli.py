"""The command line: start via ``python -m``, read the printed URLs, use it, stop it with SIGTERM."""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest
import requests

from airflow_provider_constantcontact.sandbox.__main__ import build_parser


def read_banner(process: subprocess.Popen, timeout: float = 20) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.startswith("Press Ctrl-C"):
            return lines
    raise AssertionError(f"no banner: {lines}")


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_cli_prints_urls_ids_and_connection_then_serves_until_stopped(stop_signal):
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_constantcontact.sandbox",
            "--port",
            "0",
            "--list",
            "Newsletter",
            "--list",
            "VIP Customers",
            "--custom-field",
            "loyalty_tier",
            "--client-id",
            "cli-client",
            "--rate-limit",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        banner = read_banner(process)
        text = "\n".join(banner)
        base_url = re.search(r"running at (http://127\.0\.0\.1:\d+)", text).group(1)
        assert f"API base URL:         {base_url}/v3" in text
        list_ids = {m.group(2): m.group(1) for m in re.finditer(r"List id:\s+([0-9a-f-]{36})  (.+)", text)}
        assert set(list_ids) == {"Newsletter", "VIP Customers"}
        assert re.search(r"Custom field id:\s+[0-9a-f-]{36}  cf:loyalty_tier", text)
        export = next(
            line for line in banner if line.startswith("export AIRFLOW_CONN_CONSTANTCONTACT_DEFAULT=")
        )
        conn = json.loads(shlex.split(export.split("=", 1)[1])[0])
        assert conn["login"] == "cli-client"
        assert conn["extra"]["api_base_url"] == f"{base_url}/v3"
        assert conn["extra"]["max_requests_per_second"] == 2

        token = requests.post(
            conn["extra"]["token_url"],
            auth=(conn["login"], conn["password"]),
            data={"grant_type": "refresh_token", "refresh_token": conn["extra"]["refresh_token"]},
            timeout=5,
        )
        assert token.status_code == 200
        lists = requests.get(
            f"{base_url}/v3/contact_lists/{list_ids['VIP Customers']}",
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
            timeout=5,
        )
        assert lists.status_code == 200
        assert lists.json()["name"] == "VIP Customers"
    finally:
        process.send_signal(stop_signal)
        out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    assert "stopped" in out


def test_cli_flags_have_the_documented_defaults():
    args = build_parser().parse_args([])
    assert (args.host, args.port) == ("127.0.0.1", 8765)
    assert (args.rate_limit, args.daily_quota, args.token_rate_limit) == (4.0, 10000, 1.0)
    assert args.processing_rate is None
    assert args.rotating_refresh_tokens is False
    assert args.access_token_ttl == 86400
    parsed = build_parser().parse_args(
        ["--rotating-refresh-tokens", "--processing-rate", "500", "--list", "A"]
    )
    assert (parsed.rotating_refresh_tokens, parsed.processing_rate, parsed.lists) == (True, 500.0, ["A"])


def test_cli_exits_with_an_error_when_the_port_is_taken(sandbox):
    result = subprocess.run(
        [sys.executable, "-m", "airflow_provider_constantcontact.sandbox", "--port", str(sandbox.port)],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 1
    assert "cannot listen" in result.stderr
