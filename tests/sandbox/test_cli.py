"""The command line: start via ``python -m``, read the printed URLs, use it, stop it with SIGTERM."""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from airflow_provider_constantcontact.sandbox.__main__ import build_parser
from airflow_provider_constantcontact.sandbox.constants import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_REFRESH_TOKEN,
)
from tests.sandbox.test_oauth import jwt_claims

#: Both ways a user starts the sandbox: the module and the installed console script.
LAUNCHERS = {
    "python-m": [sys.executable, "-m", "airflow_provider_constantcontact.sandbox"],
    "console-script": [str(Path(sys.executable).parent / "constantcontact-sandbox")],
}


def read_banner(process: subprocess.Popen, timeout: float = 20) -> list[str]:
    """The lines the command prints up to "Press Ctrl-C" (fails when it stops before)."""
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


def exported_connection(banner: list[str]) -> dict:
    """The connection JSON of the printed ``export AIRFLOW_CONN_CONSTANTCONTACT_DEFAULT=...`` line."""
    export = next(line for line in banner if line.startswith("export AIRFLOW_CONN_CONSTANTCONTACT_DEFAULT="))
    return json.loads(shlex.split(export.split("=", 1)[1])[0])


@pytest.mark.parametrize("launcher", list(LAUNCHERS.values()), ids=list(LAUNCHERS))
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_cli_prints_urls_ids_and_connection_then_serves_until_stopped(launcher, stop_signal):
    process = subprocess.Popen(
        [
            *launcher,
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
        conn = exported_connection(banner)
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
    assert (args.client_id, args.client_secret, args.refresh_token) == (
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        DEFAULT_REFRESH_TOKEN,
    )
    assert (DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_REFRESH_TOKEN) == (
        "sandbox-client-id",
        "sandbox-client-secret",
        "sandbox-refresh-token",
    )
    parsed = build_parser().parse_args(
        ["--rotating-refresh-tokens", "--processing-rate", "500", "--list", "A"]
    )
    assert (parsed.rotating_refresh_tokens, parsed.processing_rate, parsed.lists) == (True, 500.0, ["A"])
    assert args.fill_lists == []
    assert args.membership_changes_move_updated_at is True
    assert (args.unsubscribe_removes_memberships, args.date_filters_inclusive) == (False, False)
    assert args.unsubscribe_moves_updated_at is True
    readings = build_parser().parse_args(
        ["--no-membership-changes-move-updated-at", "--no-unsubscribe-moves-updated-at"]
    )
    assert readings.membership_changes_move_updated_at is False
    assert readings.unsubscribe_moves_updated_at is False
    filled = build_parser().parse_args(["--fill-list", "A=3", "--fill-list", "Big = list=1000000"])
    assert filled.fill_lists == [("A", 3), ("Big = list", 1_000_000)]
    for bad in ("A", "A=", "=3", "A=-1", "A=x"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["--fill-list", bad])


def test_cli_fill_list_adds_members_served_by_the_contacts_listing():
    process = subprocess.Popen(
        [*LAUNCHERS["python-m"], "--port", "0", "--list", "A", "--fill-list", "A=3", "--fill-list", "B=1200"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        banner = read_banner(process)
        assert any(re.search(r"List id: +\S+  A \(3 members\)$", line) for line in banner), banner
        list_b = next(line.split()[2] for line in banner if line.endswith("  B (1,200 members)"))
        conn = exported_connection(banner)
        token = requests.post(
            conn["extra"]["token_url"],
            auth=(conn["login"], conn["password"]),
            data={"grant_type": "refresh_token", "refresh_token": conn["extra"]["refresh_token"]},
            timeout=5,
        ).json()["access_token"]
        body = requests.get(
            conn["extra"]["api_base_url"] + "/contacts",
            params={"lists": list_b, "limit": 500, "include_count": "true"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        ).json()
        assert body["contacts_count"] == 1200
        assert body["contacts"][0]["email_address"]["address"] == "member0@example.com"
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=20)


def test_cli_reading_flags_change_what_the_listing_and_counts_say():
    """The flags choosing a reading of undocumented behaviour reach the running sandbox, driven
    the way another process would: control calls and API requests over HTTP."""
    process = subprocess.Popen(
        [
            *LAUNCHERS["python-m"],
            "--port",
            "0",
            "--fill-list",
            "A=3",
            "--no-membership-changes-move-updated-at",
            "--unsubscribe-removes-memberships",
            "--date-filters-inclusive",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        banner = read_banner(process)
        list_a = next(line.split()[2] for line in banner if line.endswith("  A (3 members)"))
        conn = exported_connection(banner)
        base = conn["extra"]["api_base_url"].removesuffix("/v3")
        token = requests.post(
            conn["extra"]["token_url"],
            auth=(conn["login"], conn["password"]),
            data={"grant_type": "refresh_token", "refresh_token": conn["extra"]["refresh_token"]},
            timeout=5,
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}

        def contacts(**params: str) -> list[dict]:
            url = conn["extra"]["api_base_url"] + "/contacts"
            return requests.get(url, params=params, headers=headers, timeout=5).json()["contacts"]

        seeded = contacts(email="member0@example.com")[0]["updated_at"]
        assert len(contacts(updated_after=seeded)) == 3  # inclusive: the seeding time itself
        clock = requests.post(base + "/sandbox/clock", json={"advance_seconds": 60}, timeout=5).json()
        leave = requests.post(
            base + f"/sandbox/lists/{list_a}/leave", json={"emails": ["member0@example.com"]}, timeout=5
        )
        assert leave.json()["left"] == 1
        assert contacts(updated_after=clock["now"]) == []  # leaving did not move updated_at
        unsubscribe = {"emails": ["member1@example.com"]}
        requests.post(base + "/sandbox/contacts/unsubscribe", json=unsubscribe, timeout=5)
        counted = requests.get(
            conn["extra"]["api_base_url"] + f"/contact_lists/{list_a}",
            params={"include_membership_count": "all"},
            headers=headers,
            timeout=5,
        ).json()
        assert counted["membership_count"] == 1  # the unsubscribe ended the membership too
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=20)


def test_cli_exits_with_an_error_when_the_port_is_taken(sandbox):
    result = subprocess.run(
        [sys.executable, "-m", "airflow_provider_constantcontact.sandbox", "--port", str(sandbox.port)],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 1
    assert "cannot listen" in result.stderr


def test_cli_flags_reach_oauth_rotation_token_lifetime_and_quota():
    """Each flag changes what the started sandbox does over HTTP, not just what it prints."""
    process = subprocess.Popen(
        [
            *LAUNCHERS["python-m"],
            "--port",
            "0",
            "--client-secret",
            "S",
            "--refresh-token",
            "R",
            "--rotating-refresh-tokens",
            "--access-token-ttl",
            "5",
            "--daily-quota",
            "3",
            "--rate-limit",
            "0",
            "--token-rate-limit",
            "0",  # token calls back to back; the API quota is what is tested here
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        banner = read_banner(process)
        conn = exported_connection(banner)
        assert (conn["login"], conn["password"]) == (DEFAULT_CLIENT_ID, "S")
        assert conn["extra"]["refresh_token"] == "R"
        assert conn["extra"]["max_requests_per_second"] == 0
        token_url, api_base_url = conn["extra"]["token_url"], conn["extra"]["api_base_url"]

        def refresh(refresh_token: str, secret: str = "S") -> requests.Response:
            return requests.post(
                token_url,
                auth=(DEFAULT_CLIENT_ID, secret),
                data={"grant_type": "refresh_token", "refresh_token": refresh_token},
                timeout=5,
            )

        assert refresh("R", secret=DEFAULT_CLIENT_SECRET).json()["error"] == "invalid_client"
        issued_at = time.time()
        first = refresh("R")
        assert first.status_code == 200, first.text
        tokens = first.json()
        assert tokens["expires_in"] == 5
        assert abs(jwt_claims(tokens["access_token"])["exp"] - (issued_at + 5)) <= 2
        rotated = tokens["refresh_token"]
        assert rotated not in ("R", "")
        reused = refresh("R")
        assert (reused.status_code, reused.json()["error"]) == (400, "invalid_grant")
        second = refresh(rotated)
        assert second.status_code == 200
        assert second.json()["refresh_token"] != rotated

        headers = {"Authorization": f"Bearer {second.json()['access_token']}"}
        calls = [requests.get(api_base_url + "/contact_lists", headers=headers, timeout=5) for _ in range(4)]
        assert [r.status_code for r in calls] == [200, 200, 200, 429]
        assert calls[-1].json() == {"error_key": "quota_exceeded", "error_message": "Limit Exceeded"}
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
