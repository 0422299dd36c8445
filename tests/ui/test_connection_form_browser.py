"""The Constant Contact connection form and its Test button in a real browser.

Headless Chromium (Debian's package, driven by Playwright; no browser download) against
`airflow standalone` with this provider installed and the Test button enabled. The connection
points at a sandbox running in this process, so the API server's Test call really refreshes a
token and reads the API. Writes the screenshots for docs/connection-setup.md.

Airflow 3.0's UI has no Test button (``ui_test_button_name``): there the test checks the form, that
no Test button is offered, and the API server's Test call the button would send.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow import __version__ as airflow_version
from packaging.version import Version
from playwright.sync_api import Browser, Locator, Page, Response, Route, expect, sync_playwright

from airflow_provider_constantcontact.constants import DEFAULT_API_BASE_URL
from airflow_provider_constantcontact.get_provider_info import (
    CLIENT_ID_PLACEHOLDER,
    CLIENT_SECRET_PLACEHOLDER,
)
from airflow_provider_constantcontact.sandbox import ConstantContactSandbox
from tests.airflow_standalone import AirflowStandalone
from tests.conftest import REPO_ROOT

# One worker runs the whole module under pytest-xdist (--dist loadgroup): one Airflow, one browser.
pytestmark = [
    pytest.mark.standalone,
    pytest.mark.browser,
    pytest.mark.timeout(900),
    pytest.mark.xdist_group("connection_form_browser"),
]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS_IMAGES = REPO_ROOT / "docs" / "images"
UI_TIMEOUT_MS = 30_000
TEST_API = "**/api/v2/connections/test"
CONNECTIONS_API = "/api/v2/connections"


@pytest.fixture(scope="module")
def module_sandbox() -> Iterator[ConstantContactSandbox]:
    """One sandbox for the whole module (the standalone Airflow outlives a test), limits off."""
    with ConstantContactSandbox(rate_limit=0, token_rate_limit=0, lists=["Newsletter"]) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def airflow() -> Iterator[AirflowStandalone]:
    with AirflowStandalone(env={"AIRFLOW__CORE__TEST_CONNECTION": "Enabled"}) as airflow:
        print(f"airflow standalone ready in {airflow.startup_seconds:.1f} s")
        yield airflow


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    expect.set_options(timeout=UI_TIMEOUT_MS)  # the UI loads its translations after the first paint
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium with scripts/browser-deps")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, airflow: AirflowStandalone) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, base_url=airflow.base_url)
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    yield page
    context.close()


def ui_test_button_name() -> str | None:
    """The accessible name of the Test button on a connection's row; None where the UI has none.

    Airflow 3.0's UI offers no Test button at all, though its API server has the endpoint and
    tells the UI the setting (``test_connection`` in ``GET /ui/config``). In 3.0.6's UI source
    (``airflow/ui/src/`` of the installed package) a connection row's actions are Edit and Delete
    only (``pages/Connections/Connections.tsx``, lines 70-78), the Add and Edit forms have one
    button, Save (``pages/Connections/ConnectionForm.tsx``, lines 250-256), nothing reads
    ``test_connection`` but the test mocks (``mocks/handlers/config.ts``, line 34), and the built
    bundle (``ui/dist/assets/index-*.js``) holds ``/api/v2/connections/test`` only in the generated
    API client, which no page calls. 3.1.8, the next line tested, has the row's button.
    """
    return None if Version(airflow_version) < Version("3.1") else "Test Connection"


# What a connection row of Airflow 3.0's list holds instead: these actions, by accessible name.
ROW_ACTIONS_WITHOUT_TEST = ["Edit Connection", "Delete Connection"]
NAMED_TEST = re.compile(r"\btest\b", re.I)  # any button named for testing ("Test", "Test Connection")


def _test_rejects_port_zero() -> bool:
    """Whether this Airflow answers the UI's Test of a port-less connection with 400.

    The UI sends ``port: 0`` (``Number(null)``) and Airflow 3.3.2 (a regression of that release)
    compares that with the stored NULL as a *different* port, refusing to reuse the stored
    secrets (fixed upstream in apache/airflow#73298). Every connection type without a port is
    affected, not only this one.
    """
    try:
        from airflow.api_fastapi.core_api.routes.public.connections import _same_endpoint
    except ImportError:
        return False
    return not _same_endpoint(0, None)


def work_around_port_zero(page: Page) -> None:
    """On an Airflow with the port-0 bug, send this page's Test requests as a fixed Airflow would."""
    if _test_rejects_port_zero():
        page.route(TEST_API, _drop_zero_port)


def _drop_zero_port(route: Route) -> None:
    """Send the UI's Test request with the port the UI meant (none), as fixed Airflow reads it."""
    body = route.request.post_data_json
    if isinstance(body, dict) and body.get("port") == 0:
        body["port"] = None
        route.continue_(post_data=json.dumps(body))
    else:
        route.continue_()


def _ui_masks_extra_fields() -> bool:
    """Whether this Airflow's UI renders ``format: password`` extra fields as masked inputs.

    Airflow 3.2's form renders every extra field as plain text (3.3 added masked ones); stored,
    the refresh token is masked (``***``) by its name on both.
    """
    return Version(airflow_version) >= Version("3.3")


def _screenshot_paths(name: str, tmp_path: Path) -> list[Path]:
    """Always a tmp copy; the docs image too, from the newest UI only, never in CI (which must
    not change the work tree)."""
    paths = [tmp_path / name]
    if not os.environ.get("CI") and _ui_masks_extra_fields():
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        paths.append(DOCS_IMAGES / name)
    return paths


def log_in(page: Page, airflow: AirflowStandalone) -> None:
    page.goto("/")
    page.get_by_label(re.compile("username", re.I)).fill("admin")
    page.get_by_label(re.compile("password", re.I)).fill(airflow.admin_password)
    page.get_by_role("button", name=re.compile("sign in", re.I)).click()
    expect(page.get_by_role("button", name="Admin")).to_be_visible()


def open_add_constant_contact_form(page: Page, conn_id: str) -> None:
    """Admin → Connections → Add Connection, type "Constant Contact"."""
    page.get_by_role("button", name="Admin").click()
    page.get_by_role("menuitem", name="Connections").click()
    expect(page).to_have_url(re.compile(r"/connections$"))
    page.get_by_role("button", name="Add Connection").click()
    page.get_by_label("Connection ID").fill(conn_id)
    page.get_by_role("combobox", name="Connection Type").fill("Constant")
    page.get_by_role("option", name="Constant Contact", exact=True).click()


def field(page: Page, label: str) -> Locator:
    """The form field whose label starts with ``label`` (the UI does not tie extra-field labels to inputs)."""
    return (
        page.get_by_role("dialog")
        .get_by_role("group")
        .filter(has=page.locator("label", has_text=re.compile(rf"^{re.escape(label)}\s*$")))
    )


def fill_form(
    page: Page, *, client_id: str, client_secret: str, refresh_token: str, api: str, token: str
) -> None:
    """Fill every Constant Contact field (standard section open on entry, extra section on exit)."""
    page.get_by_label("Client ID (API key)").fill(client_id)
    page.get_by_label("Client secret").fill(client_secret)
    page.get_by_role("button", name="Extra Fields", exact=True).click()
    field(page, "Refresh token").locator("input").fill(refresh_token)
    field(page, "API base URL").locator("input").fill(api)
    field(page, "Token URL").locator("input").fill(token)
    field(page, "Requests per second").locator("input").fill("0")


def save(page: Page, conn_id: str) -> tuple[Locator, dict[str, Any]]:
    """Save the open form; the new connection's row in the list, and the body the UI posted."""
    with page.expect_request(
        lambda request: request.method == "POST" and request.url.endswith(CONNECTIONS_API)
    ) as sent:
        page.get_by_role("dialog").get_by_role("button", name="Save").click()
    expect(page.get_by_role("dialog")).to_be_hidden()
    row = page.get_by_role("row").filter(has_text=conn_id)
    expect(row).to_be_visible()
    body = sent.value.post_data_json
    assert isinstance(body, dict)
    assert body["connection_id"] == conn_id
    return row, body


def press_test(row: Locator) -> Response:
    """Press the row's Test button; the API server's answer to the request the UI sent."""
    name = ui_test_button_name()
    assert name is not None, f"Airflow {airflow_version}'s UI has no Test button"
    with row.page.expect_response(TEST_API) as answer:
        row.get_by_role("button", name=name).click()
    return answer.value


def expect_no_test_button(page: Page, row: Locator) -> None:
    """Airflow 3.0: the row offers Edit and Delete, nowhere on the page a Test button."""
    expect(row.get_by_role("button", name="Edit Connection")).to_be_visible()
    actions = row.get_by_role("button").evaluate_all(
        "buttons => buttons.map(b => b.getAttribute('aria-label') || b.textContent.trim())"
    )
    assert actions == ROW_ACTIONS_WITHOUT_TEST
    expect(page.get_by_role("button", name=NAMED_TEST)).to_have_count(0)


def api_server_test(airflow: AirflowStandalone, saved: dict[str, Any]) -> dict[str, Any]:
    """Where the UI has no Test button: the API server's Test call for what the form saved.

    ``saved`` is the body the UI posted on Save (``save``), so the call tests the values as the
    form sent them, unmasked; the answer's ``status`` and ``message``.
    """
    answer = airflow.api_session().post(f"{CONNECTIONS_API}/test", json=saved)
    assert answer.status_code == 200, answer.text  # status and message only, no secrets
    result = answer.json()
    assert isinstance(result, dict)
    return result


def toast_with(page: Page, text: str) -> Locator:
    """The Test Connection toast that contains ``text``."""
    return page.get_by_role("status").filter(has_text="Test Connection").filter(has_text=text)


def test_add_constant_contact_connection_and_test_it(
    page: Page, airflow: AirflowStandalone, module_sandbox: ConstantContactSandbox, tmp_path: Path
) -> None:
    started = time.monotonic()
    log_in(page, airflow)
    open_add_constant_contact_form(page, "constantcontact_ui")
    dialog = page.get_by_role("dialog")

    # Standard fields: relabelled, with placeholders; host, schema and port hidden.
    client_id = page.get_by_label("Client ID (API key)")
    expect(client_id).to_have_attribute("placeholder", CLIENT_ID_PLACEHOLDER)
    secret = page.get_by_label("Client secret")
    expect(secret).to_have_attribute("type", "password")
    expect(secret).to_have_attribute("placeholder", CLIENT_SECRET_PLACEHOLDER)
    for hidden in ("Host", "Schema", "Port", "Login", "Password"):
        expect(dialog.locator("label", has_text=re.compile(rf"^{hidden}\s*$"))).to_have_count(0)
    for path in _screenshot_paths("connection-form-standard.png", tmp_path):
        dialog.screenshot(path=str(path))  # empty, so it shows the placeholders

    # Extra fields: labelled, with help text, the refresh token masked, URLs with their defaults.
    page.get_by_role("button", name="Extra Fields", exact=True).click()
    refresh = field(page, "Refresh token")
    if _ui_masks_extra_fields():
        expect(refresh.locator("input")).to_have_attribute("type", "password")
    else:  # in plain text while typed (docs/connection-setup.md says so); stored, it is masked
        expect(refresh.locator("input")).not_to_have_attribute("type", "password")
    expect(refresh).to_contain_text("constantcontact-auth")
    expect(refresh).to_contain_text("offline_access")
    expect(field(page, "API base URL").locator("input")).to_have_value(DEFAULT_API_BASE_URL)
    expect(field(page, "API base URL")).to_contain_text("sandbox")
    expect(field(page, "Token URL")).to_contain_text("token endpoint")
    expect(field(page, "Requests per second")).to_contain_text("4 a second")
    page.get_by_role("button", name="Standard Fields", exact=True).click()

    fill_form(
        page,
        client_id=module_sandbox.client_id,
        client_secret=module_sandbox.client_secret,
        refresh_token=module_sandbox.refresh_token,
        api=module_sandbox.api_base_url,
        token=module_sandbox.token_url,
    )
    expect(field(page, "Token URL").locator("input")).to_have_value(module_sandbox.token_url)
    for path in _screenshot_paths("connection-form.png", tmp_path):
        dialog.screenshot(path=str(path))
    page.get_by_role("button", name="Standard Fields", exact=True).click()
    expect(client_id).to_have_value(module_sandbox.client_id)

    row, saved = save(page, "constantcontact_ui")
    if ui_test_button_name() is None:
        # Airflow 3.0: enabled, and /ui/config says so to the UI, yet it has no button to press.
        ui_config = airflow.api_session().get("/ui/config")
        assert ui_config.status_code == 200, ui_config.text
        assert ui_config.json()["test_connection"] == "Enabled"
        expect_no_test_button(page, row)
        result = api_server_test(airflow, saved)
        assert result["status"] is True, result["message"]
        assert "Connected to Constant Contact" in str(result["message"])
        assert module_sandbox.api_base_url in str(result["message"])
    else:
        if _test_rejects_port_zero():
            # Airflow 3.3.2: the row's Test sends port 0, which the API takes for another
            # destination than the stored NULL, so it refuses to reuse the stored secrets. Shown
            # unpatched first: once upstream fixes _same_endpoint, this branch stops running.
            answer = press_test(row)
            assert answer.request.post_data_json["port"] == 0
            assert answer.status == 400, answer.text()
            assert "differs from the stored connection" in answer.json()["detail"]
            failed = toast_with(page, "Failed")
            expect(failed).to_contain_text("Bad Request")
            expect(failed).to_be_hidden(timeout=60_000)  # keep it out of the success screenshot
            work_around_port_zero(page)
        answer = press_test(row)
        assert answer.status == 200, answer.text()
        toast = toast_with(page, "Connected to Constant Contact")
        expect(toast).to_contain_text(module_sandbox.api_base_url)
        for path in _screenshot_paths("connection-test-success.png", tmp_path):
            page.screenshot(path=str(path), animations="disabled")  # the toast fully slid in

    # The REST API shows the stored secrets masked, and the rest as entered.
    stored = airflow.api_session().get("/api/v2/connections/constantcontact_ui")
    assert stored.status_code == 200, stored.text
    body = stored.json()
    assert body["conn_type"] == "constantcontact"
    assert body["login"] == module_sandbox.client_id
    assert body["password"] == "***"
    extra = json.loads(body["extra"])
    assert extra["refresh_token"] == "***"
    assert extra["api_base_url"] == module_sandbox.api_base_url
    assert module_sandbox.client_secret not in stored.text
    assert module_sandbox.refresh_token not in stored.text

    # Reopened for editing, the form holds the masks, not the stored secrets.
    row.get_by_role("button", name="Edit Connection").click()
    expect(dialog).to_be_visible()
    expect(page.get_by_label("Client ID (API key)")).to_have_value(module_sandbox.client_id)
    expect(page.get_by_label("Client secret")).to_have_value("***")
    page.get_by_role("button", name="Extra Fields", exact=True).click()
    expect(field(page, "Refresh token").locator("input")).to_have_value("***")
    expect(field(page, "API base URL").locator("input")).to_have_value(module_sandbox.api_base_url)
    # Masked by its name ("token"), though not a secret: what docs/connection-setup.md says.
    expect(field(page, "Token URL").locator("input")).to_have_value("***")
    values = dialog.locator("input").evaluate_all("inputs => inputs.map(i => i.value)")
    for text in [*values, dialog.inner_text()]:
        assert module_sandbox.client_secret not in text
        assert module_sandbox.refresh_token not in text
    if ui_test_button_name() is None:  # nor does 3.0's Edit form offer one: Save is its only action
        expect(dialog.get_by_role("button", name="Save")).to_be_visible()
        expect(dialog.get_by_role("button", name=NAMED_TEST)).to_have_count(0)
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    print(f"UI flow (login, add, test) took {time.monotonic() - started:.1f} s")


def test_wrong_client_secret_shows_why_the_test_failed(
    page: Page, airflow: AirflowStandalone, module_sandbox: ConstantContactSandbox, tmp_path: Path
) -> None:
    """Same values but the client secret, in the API server that just tested the good ones.

    A wrong secret must fail even though that process already holds an access token for the
    same client ID and refresh token: the Test button has to check the credentials as entered.
    """
    log_in(page, airflow)
    open_add_constant_contact_form(page, "constantcontact_wrong_secret")
    fill_form(
        page,
        client_id=module_sandbox.client_id,
        client_secret="not-the-client-secret",
        refresh_token=module_sandbox.refresh_token,
        api=module_sandbox.api_base_url,
        token=module_sandbox.token_url,
    )
    row, saved = save(page, "constantcontact_wrong_secret")
    if ui_test_button_name() is None:  # Airflow 3.0: the API server's answer, as the button would get it
        expect_no_test_button(page, row)
        result = api_server_test(airflow, saved)
        assert result["status"] is False
        assert "invalid_client" in str(result["message"])
        assert "Client secret" in str(result["message"])
        return
    work_around_port_zero(page)
    assert press_test(row).status == 200  # the test ran; its result is the failure below
    toast = toast_with(page, "Failed")
    expect(toast).to_contain_text("invalid_client")
    expect(toast).to_contain_text("Client secret")
    for path in _screenshot_paths("connection-test-failure.png", tmp_path):
        page.screenshot(path=str(path), animations="disabled")  # the toast fully slid in
