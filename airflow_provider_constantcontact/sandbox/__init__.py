"""A local emulator of the Constant Contact V3 API (and its OAuth2 server) for tests and demos.

Standard library only and free of Airflow imports so it starts fast and standalone.
"""

from airflow_provider_constantcontact.sandbox.constants import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_PORT,
    DEFAULT_REFRESH_TOKEN,
)
from airflow_provider_constantcontact.sandbox.emulator import ConstantContactSandbox
from airflow_provider_constantcontact.sandbox.server import RequestLogEntry

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_PORT",
    "DEFAULT_REFRESH_TOKEN",
    "ConstantContactSandbox",
    "RequestLogEntry",
]
