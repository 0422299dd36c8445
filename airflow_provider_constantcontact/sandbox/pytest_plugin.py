"""Pytest fixtures that start a local Constant Contact sandbox and stop it after the test.

Enable them in your own project with::

    pytest_plugins = ["airflow_provider_constantcontact.sandbox.pytest_plugin"]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_provider_constantcontact.sandbox.emulator import ConstantContactSandbox


@pytest.fixture
def constantcontact_sandbox_factory() -> Iterator[Callable[..., ConstantContactSandbox]]:
    """A callable taking ``ConstantContactSandbox`` options and returning a started sandbox.

    Every sandbox it started is stopped at teardown.
    """
    started: list[ConstantContactSandbox] = []

    def factory(**options: Any) -> ConstantContactSandbox:
        sandbox = ConstantContactSandbox(**options).start()
        started.append(sandbox)
        return sandbox

    yield factory
    for sandbox in reversed(started):
        sandbox.stop()


@pytest.fixture
def constantcontact_sandbox(
    constantcontact_sandbox_factory: Callable[..., ConstantContactSandbox],
) -> ConstantContactSandbox:
    """A started sandbox: rate limits off, fast processing, list "Newsletter", field "loyalty_tier"."""
    return constantcontact_sandbox_factory(
        rate_limit=0,
        token_rate_limit=0,
        processing_rate=None,
        device_poll_interval=0,
        lists=["Newsletter"],
        custom_fields=["loyalty_tier"],
    )
