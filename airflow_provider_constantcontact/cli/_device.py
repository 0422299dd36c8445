"""Device authorization flow (RFC 8628) for machines without a browser."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TextIO

from airflow_provider_constantcontact.cli._oauth import (
    DEVICE_GRANT,
    EXIT_EXPIRED,
    AuthCliError,
    OAuthClient,
    OAuthEndpointError,
    explain,
)

DEFAULT_INTERVAL = 5
MIN_INTERVAL = 0.2
SLOW_DOWN_STEP = 5


def run_device(
    client: OAuthClient,
    *,
    device_auth_url: str,
    token_url: str,
    scopes: str,
    timeout: float | None,
    out: TextIO,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Start a device authorization, show the code, poll until approved; the token response."""
    try:
        device = client.post(device_auth_url, {"client_id": client.client_id, "scope": scopes})
    except OAuthEndpointError as exc:
        raise explain(exc, step="Starting the device authorization") from None
    try:
        device_code = str(device["device_code"])
        user_code = str(device["user_code"])
        verification_uri = str(device.get("verification_uri") or device["verification_uri_complete"])
    except KeyError as exc:
        raise AuthCliError(
            f"{device_auth_url} answered without {exc.args[0]}: is it a device authorization endpoint?"
        ) from None
    expires_in = float(device.get("expires_in") or 600)
    # RFC 8628: 5 s when the server names no interval; a floor keeps a 0 from spinning.
    interval = max(MIN_INTERVAL, float(device.get("interval", DEFAULT_INTERVAL) or 0))
    wait_for = min(expires_in, timeout) if timeout else expires_in
    complete = device.get("verification_uri_complete")
    print(
        "On any device with a browser, open\n\n"
        f"  {verification_uri}\n\nand enter the code\n\n  {user_code}\n\n"
        + (f"or open it with the code filled in directly: {complete}\n" if complete else "")
        + f"Sign in to the Constant Contact account to connect and allow access. Waiting up to "
        f"{wait_for / 60:.0f} min (the code expires in {expires_in / 60:.0f} min) ...",
        file=out,
        flush=True,
    )
    deadline = clock() + wait_for
    while True:
        remaining = deadline - clock()
        if remaining <= 0:
            raise AuthCliError(
                f"The device code was not approved within {wait_for:.0f} s"
                + (" and has expired" if wait_for >= expires_in else "")
                + ". Run the command again and approve the code in time.",
                EXIT_EXPIRED,
            )
        sleep(min(interval, remaining))
        try:
            return client.post(
                token_url,
                {"grant_type": DEVICE_GRANT, "device_code": device_code, "client_id": client.client_id},
            )
        except OAuthEndpointError as exc:
            if exc.error == "authorization_pending":
                continue
            if exc.error == "slow_down":
                interval += SLOW_DOWN_STEP
                continue
            raise explain(exc, step="Waiting for the device approval") from None
